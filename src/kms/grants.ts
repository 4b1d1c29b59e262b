/**
 * Grants of the network KMS: which host (by its X25519 public key) may call which data-key
 * operation on which master key, under which encryption context. The pure part (validation,
 * matching) is tested without files or sockets; {@link GrantStore} keeps them in
 * `<state-dir>/grants.json` (mode 0600, written atomically before a change returns).
 *
 * Matching is AWS KMS's EncryptionContextSubset: every pair of the grant's context must be in
 * the call's context; a value ending in `*` matches by prefix (`volume=vol-*` covers every
 * volume, and no host key: those are wrapped under `purpose=host-key`). A grant with an empty
 * context matches any context of its key. Nothing binds a context to the host that created a
 * blob, so host B unwraps a volume key made by host A when both hold a grant for it.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ConflictError, NotFoundError, RuntimeError, UsageError, oneLine } from '../common/errors.js';
import { readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import { SerialQueue } from '../common/serial.js';
import { PEER_NAME_PATTERN } from '../api/vpc.js';
import { decodeKey, encodeKey } from '../vpc/handshake.js';
import { MAX_CONTEXT_PAIRS } from './blob.js';
import { GRANT_OPERATIONS, type CreateGrantRequest, type Grant, type GrantOperation } from './protocol.js';
import type { EncryptionContext } from './provider.js';

const GRANT_ID = /^grant-[0-9a-f]{16}$/;
const MAX_GRANTS = 10_000;

/** A checked, canonical grant request (key in canonical base64, context values well formed). */
export function checkGrantRequest(req: CreateGrantRequest): CreateGrantRequest & { context: Record<string, string> } {
  if (!PEER_NAME_PATTERN.test(req.hostId)) throw new UsageError(`host id '${req.hostId}' must be 1-63 letters, digits, . _ - (starting with a letter or digit)`);
  const publicKey = encodeKey(decodeKey(req.publicKey, 'host public key'));
  if (req.operations.length === 0) throw new UsageError(`a grant needs at least one operation (${GRANT_OPERATIONS.join(', ')})`);
  for (const op of req.operations) if (!(GRANT_OPERATIONS as readonly string[]).includes(op)) throw new UsageError(`unknown operation '${op}' (one of ${GRANT_OPERATIONS.join(', ')})`);
  const context = req.context ?? {};
  if (Object.keys(context).length > MAX_CONTEXT_PAIRS) throw new UsageError(`a grant's context has at most ${MAX_CONTEXT_PAIRS} pairs`);
  for (const [k, v] of Object.entries(context)) {
    if (!k || !v) throw new UsageError('grant context keys and values must not be empty');
    if (v.indexOf('*') !== -1 && v.indexOf('*') !== v.length - 1) throw new UsageError(`grant context value '${v}': '*' only at the end (a prefix)`);
  }
  return { hostId: req.hostId, publicKey, keyId: req.keyId, operations: [...new Set(req.operations)], context };
}

/** Whether the grant's context constraint admits `context` (subset, with `prefix*` values). */
export function contextMatches(constraint: Readonly<Record<string, string>>, context: EncryptionContext): boolean {
  for (const [k, want] of Object.entries(constraint)) {
    const have = Object.prototype.hasOwnProperty.call(context, k) ? context[k] : undefined;
    if (have === undefined) return false;
    if (want.endsWith('*') ? !have.startsWith(want.slice(0, -1)) : have !== want) return false;
  }
  return true;
}

/** The first grant that lets `publicKey` call `operation` on `keyId` under `context`, if any. */
export function findGrant(grants: readonly Grant[], publicKey: string, operation: GrantOperation, keyId: string, context: EncryptionContext): Grant | undefined {
  return grants.find((g) => g.publicKey === publicKey && g.keyId === keyId && g.operations.includes(operation) && contextMatches(g.context, context));
}

/** The host id the grants give `publicKey`, or undefined if none names it. */
export function hostIdOf(grants: readonly Grant[], publicKey: string): string | undefined {
  return grants.find((g) => g.publicKey === publicKey)?.hostId;
}

/** A new grant for a checked request; one host id per key and one key per host id. */
export function newGrant(req: CreateGrantRequest & { context: Record<string, string> }, existing: readonly Grant[], now: Date, random: (n: number) => Buffer = randomBytes): Grant {
  if (existing.length >= MAX_GRANTS) throw new ConflictError(`this KMS holds ${MAX_GRANTS} grants, the most it keeps`);
  for (const g of existing) {
    if (g.publicKey === req.publicKey && g.hostId !== req.hostId) throw new ConflictError(`public key already belongs to host ${g.hostId}`);
    if (g.hostId === req.hostId && g.publicKey !== req.publicKey) throw new ConflictError(`host ${req.hostId} has grants under another public key (revoke them first)`);
  }
  return { grantId: `grant-${random(8).toString('hex')}`, ...req, createdAt: now.toISOString() };
}

const GrantSchema = z
  .object({
    grantId: z.string().regex(GRANT_ID),
    hostId: z.string().regex(PEER_NAME_PATTERN),
    publicKey: z.string(),
    keyId: z.string().min(1),
    operations: z.array(z.enum(GRANT_OPERATIONS)).min(1),
    context: z.record(z.string(), z.string()),
    createdAt: z.string(),
  })
  .strict();
const FileSchema = z.object({ format: z.literal('nitride-kms-grants'), version: z.literal(1), grants: z.array(GrantSchema) }).strict();

/** The grants of one KMS, in memory and in `file`. */
export class GrantStore {
  private readonly queue = new SerialQueue();

  private constructor(
    private readonly file: string,
    private grants: Grant[],
  ) {}

  static async open(file: string): Promise<GrantStore> {
    let raw: unknown;
    try {
      raw = await readJsonFile<unknown>(file);
    } catch (err) {
      throw new RuntimeError(`cannot read grants ${file}: ${oneLine(err)}`, 'KMS_UNAVAILABLE');
    }
    if (raw === undefined) return new GrantStore(file, []);
    const parsed = FileSchema.safeParse(raw);
    if (!parsed.success) throw new RuntimeError(`grants file ${file} is not valid: ${parsed.error.issues[0]?.message ?? 'schema'}`, 'KMS_UNAVAILABLE');
    return new GrantStore(file, parsed.data.grants as Grant[]);
  }

  list(): readonly Grant[] {
    return this.grants;
  }

  create(req: CreateGrantRequest & { context: Record<string, string> }): Promise<Grant> {
    return this.queue.run(async () => {
      const grant = newGrant(req, this.grants, new Date());
      await this.save([...this.grants, grant]);
      return grant;
    });
  }

  revoke(grantId: string): Promise<Grant> {
    return this.queue.run(async () => {
      const grant = this.grants.find((g) => g.grantId === grantId);
      if (!grant) throw new NotFoundError(`grant ${grantId} does not exist`, 'KMS_GRANT_NOT_FOUND');
      await this.save(this.grants.filter((g) => g !== grant));
      return grant;
    });
  }

  private async save(next: Grant[]): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify({ format: 'nitride-kms-grants', version: 1, grants: next }, null, 2) + '\n', 0o600);
    this.grants = next;
  }
}
