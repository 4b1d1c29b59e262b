/** `nitride snapshot …`: crash-consistent snapshots of rbd volumes (restore: `volume create --from-snapshot`). */
import { Command } from 'commander';
import { pathTo, type Deleted } from '../../api/control.js';
import { SNAPSHOTS_API, type CreateSnapshotRequest, type SnapshotInfo } from '../../api/snapshots.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, formatBytes, renderFields, renderTable } from '../output.js';

export function snapshotCommand(): Command {
  const snapshot = new Command('snapshot').description('snapshots of rbd volumes (flushed, then an RBD snapshot); restore with volume create --from-snapshot');

  snapshot.addCommand(
    clientVerb(new Command('create').description('snapshot a volume').argument('<volume>', 'volume id').option('--name <name>', 'a unique name')).action(
      async (volumeId: string, options: ClientOptions & { name?: string }) => {
        const body: CreateSnapshotRequest = { volumeId, ...(options.name ? { name: options.name } : {}) };
        emit(options, await clientOf(options).call<SnapshotInfo>('POST', SNAPSHOTS_API.snapshots, body), renderSnapshot);
      },
    ),
  );
  snapshot.addCommand(
    clientVerb(new Command('list').description('list snapshots')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<SnapshotInfo[]>(SNAPSHOTS_API.snapshots);
      emit(options, all, (rows) =>
        rows.length === 0
          ? 'no snapshots'
          : renderTable(rows, { id: (s) => s.id, name: (s) => s.name, volume: (s) => s.volumeId, size: (s) => formatBytes(s.size), created: (s) => s.createdAt }),
      );
    }),
  );
  snapshot.addCommand(
    clientVerb(new Command('describe').description('show one snapshot').argument('<id>', 'snapshot id')).action(async (id: string, options: ClientOptions) => {
      emit(options, await clientOf(options).get<SnapshotInfo>(pathTo(SNAPSHOTS_API.snapshot, { id })), renderSnapshot);
    }),
  );
  snapshot.addCommand(
    clientVerb(new Command('delete').description('delete a snapshot (refused while volumes created from it exist)').argument('<id>', 'snapshot id')).action(
      async (id: string, options: ClientOptions) => {
        const r = await clientOf(options).call<Deleted>('DELETE', pathTo(SNAPSHOTS_API.snapshot, { id }));
        emit(options, r, () => `deleted ${r.id}`);
      },
    ),
  );
  return snapshot;
}

function renderSnapshot(s: SnapshotInfo): string {
  return renderFields({ id: s.id, name: s.name, volume: s.volumeId, size: `${formatBytes(s.size)} (${s.size} bytes)`, created: s.createdAt });
}
