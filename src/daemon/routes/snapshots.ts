/** Control API routes of snapshots (contract: src/api/snapshots.ts). */
import type { Deleted } from '../../api/control.js';
import { SNAPSHOTS_API } from '../../api/snapshots.js';
import { CreateSnapshotBody, SnapshotId } from '../../api/snapshots.schema.js';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { VolumeManager } from '../../volume/manager.js';

const idOf = (params: Record<string, string>): string => parseOrThrow(SnapshotId, params.id, 'snapshot id');

export function registerSnapshotRoutes(control: ControlServer, volumes: VolumeManager): void {
  control.register({
    method: 'POST',
    path: SNAPSHOTS_API.snapshots,
    audit: 'snapshot.create',
    status: 201,
    body: CreateSnapshotBody,
    handle: async ({ body, audit }) => {
      const info = await volumes.createSnapshot(body.volumeId, body.name);
      audit.target = info.id;
      audit.details = { volumeId: info.volumeId };
      return info;
    },
  });
  control.register({ method: 'GET', path: SNAPSHOTS_API.snapshots, handle: async () => {
      await volumes.refreshed();
      return volumes.listSnapshots();
    } });
  control.register({ method: 'GET', path: SNAPSHOTS_API.snapshot, handle: async ({ params }) => {
      await volumes.refreshed();
      return volumes.describeSnapshot(idOf(params));
    } });
  control.register({
    method: 'DELETE',
    path: SNAPSHOTS_API.snapshot,
    audit: 'snapshot.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = idOf(params);
      await volumes.deleteSnapshot(id);
      return { id, deleted: true };
    },
  });
}
