/**
 * The fleet snapshot, `<state>/fleet.json`: every key this host last saw under the fleet prefix
 * and the etcd revision they are at. A daemon started while etcd is unreachable runs on it
 * (static stability), and resumes its watch from that revision when etcd answers.
 */
import { z } from 'zod';
import { readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import type { StoredKv } from './store.js';

export interface FleetSnapshot {
  version: 1;
  hostId: string;
  revision: number;
  kvs: StoredKv[];
}

const SnapshotSchema = z
  .object({
    version: z.literal(1),
    hostId: z.string(),
    revision: z.number().int().nonnegative(),
    kvs: z.array(z.object({ key: z.string(), value: z.string(), createRevision: z.number(), modRevision: z.number() }).strict()),
  })
  .strict();

/** The snapshot of `hostId`, or undefined (none, unreadable, or another host's: then the fleet is listed afresh). */
export async function readSnapshot(file: string, hostId: string): Promise<FleetSnapshot | undefined> {
  let raw: unknown;
  try {
    raw = await readJsonFile<unknown>(file);
  } catch {
    return undefined;
  }
  const parsed = SnapshotSchema.safeParse(raw);
  if (!parsed.success || parsed.data.hostId !== hostId) return undefined;
  return parsed.data;
}

/** Keys per piece of {@link snapshotText}. */
const KVS_PER_PIECE = 1000;

/**
 * JSON.stringify(snapshot), in pieces of {@link KVS_PER_PIECE} keys: at 10,000 ENIs (30,000
 * keys) the whole text is ~6 MB, written after every quiet spell; pieces keep it from the peak.
 */
export function* snapshotText(snapshot: FleetSnapshot): Generator<string> {
  const { kvs, ...head } = snapshot;
  yield JSON.stringify(head).slice(0, -1) + ',"kvs":[';
  for (let i = 0; i < kvs.length; i += KVS_PER_PIECE) yield (i ? ',' : '') + kvs.slice(i, i + KVS_PER_PIECE).map((kv) => JSON.stringify(kv)).join(',');
  yield ']}';
}

export function writeSnapshot(file: string, snapshot: FleetSnapshot): Promise<void> {
  return writeFileAtomic(file, snapshotText(snapshot));
}
