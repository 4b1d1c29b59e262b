/** Control API routes of volumes (contract: src/api/volumes.ts). */
import type { Deleted } from '../../api/control.js';
import { VOLUMES_API, type CopyProgress } from '../../api/volumes.js';
import { CreateVolumeBody, DetachVolumeBody, ModifyVolumeBody, ResizeVolumeBody, RewrapVolumeBody, VolumeCopyBody, VolumeId } from '../../api/volumes.schema.js';
import { StreamedReply, type ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { VolumeManager } from '../../volume/manager.js';

/** The `:id` path parameter, checked (400 if it is not a volume id). */
const idOf = (params: Record<string, string>): string => parseOrThrow(VolumeId, params.id, 'volume id');

export function registerVolumeRoutes(control: ControlServer, volumes: VolumeManager): void {
  control.register({
    method: 'POST',
    path: VOLUMES_API.volumes,
    audit: 'volume.create',
    status: 201,
    body: CreateVolumeBody,
    handle: async ({ body, audit }) => {
      const info = await volumes.create(body);
      audit.target = info.id;
      audit.details = { type: info.type, size: info.size, kmsKeyId: info.encryption.kmsKeyId };
      return info;
    },
  });
  control.register({ method: 'GET', path: VOLUMES_API.volumes, handle: async () => {
      await volumes.refreshed();
      return volumes.describeAll();
    } });
  control.register({ method: 'GET', path: VOLUMES_API.volume, handle: async ({ params }) => {
      await volumes.refreshed();
      return volumes.describeWithHolder(idOf(params));
    } });
  control.register({
    method: 'POST',
    path: VOLUMES_API.detach,
    audit: 'volume.detach',
    auditTarget: 'id',
    body: DetachVolumeBody,
    handle: async ({ params, body, audit }) => {
      await volumes.refreshed(); // a volume another host created a moment ago
      const r = await volumes.detach(idOf(params), body.force ?? false);
      audit.details = { force: body.force ?? false, fenced: r.fenced.map((h) => `${h.host} ${h.client} ${h.address}`) };
      return r;
    },
  });
  control.register({
    method: 'DELETE',
    path: VOLUMES_API.volume,
    audit: 'volume.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = idOf(params);
      await volumes.delete(id);
      return { id, deleted: true };
    },
  });
  control.register({
    method: 'POST',
    path: VOLUMES_API.resize,
    audit: 'volume.resize',
    auditTarget: 'id',
    body: ResizeVolumeBody,
    handle: ({ params, body }) => volumes.resize(idOf(params), body.size),
  });
  control.register({
    method: 'POST',
    path: VOLUMES_API.modify,
    audit: 'volume.modify',
    auditTarget: 'id',
    body: ModifyVolumeBody,
    handle: ({ params, body, audit }) => {
      audit.details = { ...body.performance };
      return volumes.modify(idOf(params), body.performance);
    },
  });
  control.register({
    method: 'POST',
    path: VOLUMES_API.rewrap,
    audit: 'volume.rewrap',
    auditTarget: 'id',
    body: RewrapVolumeBody,
    handle: ({ params, body }) => volumes.rewrap(idOf(params), body.kmsKeyId),
  });
  for (const direction of ['export', 'import'] as const) {
    control.register({
      method: 'POST',
      path: VOLUMES_API[direction],
      audit: `volume.${direction}`,
      auditTarget: 'id',
      body: VolumeCopyBody,
      handle: ({ params, body, signal, audit }) => {
        const id = idOf(params);
        audit.details = { path: body.path };
        return new StreamedReply((progress) => {
          let last = 0;
          const report = (p: CopyProgress) => {
            // At most ~10 progress lines a second.
            const now = Date.now();
            if (now - last >= 100 || p.done === p.total) {
              last = now;
              progress(p);
            }
          };
          return direction === 'export' ? volumes.exportTo(id, body.path, signal, report) : volumes.importFrom(id, body.path, signal, report);
        });
      },
    });
  }
}
