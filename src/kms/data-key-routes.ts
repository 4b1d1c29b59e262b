/**
 * The data-key routes of the KMS (GenerateDataKey[WithoutPlaintext], Decrypt, ReEncrypt,
 * DescribeKey), registered on the root-only Unix socket and, with `--listen`, on the network
 * channel. Each call first passes `guard` with the key it will use (resolved from the request
 * or the blob's header): the Unix socket lets every root caller through, the network checks
 * the calling host's grants. Routes and framing are in `protocol.ts`.
 */
import { z } from 'zod';
import type { Caller } from '../control/audit.js';
import { BinaryReply, type AuditDetails, type ControlServer } from '../control/server.js';
import { MAX_BLOB_BYTES, MAX_CONTEXT_PAIRS, parseBlob } from './blob.js';
import type { LocalKeyProvider } from './local.js';
import { HEADER_CIPHERTEXT_BLOB, HEADER_KEY_ID, HEADER_KEY_VERSION, KMS_API, SECRET_CONTENT_TYPE, type GrantOperation } from './protocol.js';
import { KmsInvalidCiphertextError, MAX_DATA_KEY_BYTES, type EncryptionContext, type KeyMetadata } from './provider.js';
import { wipe, type Sodium } from './sodium.js';

/**
 * Allow or refuse (throw) `operation` by `caller` on key `keyRef` (an id or alias, undefined
 * = the default key) under `context` (undefined for DescribeKey, which has none).
 */
export type DataKeyGuard = (caller: Caller | undefined, operation: GrantOperation, keyRef: string | undefined, context: EncryptionContext | undefined) => Promise<void>;

/** The Unix socket's guard: its callers are root (checked with SO_PEERCRED). */
export const allowLocal: DataKeyGuard = async () => {};

const Base64 = z
  .string()
  .max(Math.ceil(MAX_BLOB_BYTES / 3) * 4)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
const Context = z.record(z.string(), z.string()).refine((c) => Object.keys(c).length <= MAX_CONTEXT_PAIRS, `at most ${MAX_CONTEXT_PAIRS} pairs`);
const KeyRef = z.string().min(1).max(300);
const GenerateBody = z
  .object({ keyId: KeyRef.optional(), context: Context, bytes: z.number().int().min(1).max(MAX_DATA_KEY_BYTES).optional() })
  .strict();

export function registerDataKeyRoutes(c: ControlServer, p: LocalKeyProvider, sodium: Sodium, guard: DataKeyGuard): void {
  /** Plaintext key bytes as the raw reply body; wiped once written (or the peer is gone). */
  const secretReply = (plaintext: Buffer, headers: Record<string, string>): BinaryReply =>
    new BinaryReply(plaintext, { contentType: SECRET_CONTENT_TYPE, headers, onSent: () => wipe(sodium, plaintext) });

  c.register({
    method: 'GET',
    path: '/v1/keys/:ref',
    audit: 'kms.DescribeKey',
    auditTarget: 'ref',
    handle: async ({ params, audit, signal, caller }) => {
      await guard(caller, 'DescribeKey', params.ref!, undefined);
      return keyResult(audit, await p.describeKey(params.ref!, { signal }));
    },
  });
  c.register({
    method: 'POST',
    path: KMS_API.generateDataKeyWithoutPlaintext,
    audit: 'kms.GenerateDataKeyWithoutPlaintext',
    body: GenerateBody,
    handle: async ({ body, audit, signal, caller }) => {
      noteRequest(audit, body.keyId, body.context, { bytes: body.bytes ?? 64 });
      await guard(caller, 'GenerateDataKeyWithoutPlaintext', body.keyId, body.context);
      const r = await p.generateDataKeyWithoutPlaintext(body.keyId, body.context, { ...(body.bytes ? { bytes: body.bytes } : {}), signal });
      noteKey(audit, r.keyId, r.keyVersion);
      return { keyId: r.keyId, keyVersion: r.keyVersion, ciphertextBlob: r.ciphertextBlob.toString('base64') };
    },
  });
  c.register({
    method: 'POST',
    path: KMS_API.generateDataKey,
    audit: 'kms.GenerateDataKey',
    body: GenerateBody,
    handle: async ({ body, audit, signal, caller }) => {
      noteRequest(audit, body.keyId, body.context, { bytes: body.bytes ?? 64 });
      await guard(caller, 'GenerateDataKey', body.keyId, body.context);
      const r = await p.generateDataKey(body.keyId, body.context, { ...(body.bytes ? { bytes: body.bytes } : {}), signal });
      noteKey(audit, r.keyId, r.keyVersion);
      return secretReply(r.plaintext, {
        [HEADER_KEY_ID]: r.keyId,
        [HEADER_KEY_VERSION]: String(r.keyVersion),
        [HEADER_CIPHERTEXT_BLOB]: r.ciphertextBlob.toString('base64'),
      });
    },
  });
  c.register({
    method: 'POST',
    path: KMS_API.decrypt,
    audit: 'kms.Decrypt',
    body: z.object({ ciphertextBlob: Base64, context: Context }).strict(),
    handle: async ({ body, audit, signal, caller }) => {
      const blob = Buffer.from(body.ciphertextBlob, 'base64');
      await guard(caller, 'Decrypt', noteBlob(audit, blob, body.context), body.context);
      const r = await p.decrypt(blob, body.context, { signal });
      return secretReply(r.plaintext, { [HEADER_KEY_ID]: r.keyId, [HEADER_KEY_VERSION]: String(r.keyVersion) });
    },
  });
  c.register({
    method: 'POST',
    path: KMS_API.reEncrypt,
    audit: 'kms.ReEncrypt',
    body: z.object({ ciphertextBlob: Base64, context: Context, destinationKeyId: KeyRef.optional(), destinationContext: Context.optional() }).strict(),
    handle: async ({ body, audit, signal, caller }) => {
      const blob = Buffer.from(body.ciphertextBlob, 'base64');
      const sourceKey = noteBlob(audit, blob, body.context);
      if (body.destinationKeyId) audit.details = { ...audit.details, destinationKeyId: body.destinationKeyId };
      if (body.destinationContext) audit.details = { ...audit.details, destinationContext: body.destinationContext };
      await guard(caller, 'ReEncrypt', sourceKey, body.context);
      await guard(caller, 'ReEncrypt', body.destinationKeyId ?? sourceKey, body.destinationContext ?? body.context);
      const r = await p.reEncrypt(blob, body.context, body.destinationKeyId, { ...(body.destinationContext ? { destinationContext: body.destinationContext } : {}), signal });
      audit.details = { ...audit.details, destinationKeyId: r.keyId, destinationKeyVersion: r.keyVersion };
      return {
        keyId: r.keyId,
        keyVersion: r.keyVersion,
        ciphertextBlob: r.ciphertextBlob.toString('base64'),
        sourceKeyId: r.sourceKeyId,
        sourceKeyVersion: r.sourceKeyVersion,
      };
    },
  });
}

/** Audit a key-management result under the canonical key id. */
export function keyResult(audit: AuditDetails, meta: KeyMetadata): KeyMetadata {
  audit.target = meta.keyId;
  audit.details = { ...audit.details, state: meta.state, keyVersion: meta.currentVersion };
  return meta;
}

function noteRequest(audit: AuditDetails, keyId: string | undefined, context: EncryptionContext, extra: Record<string, unknown>): void {
  if (keyId !== undefined) audit.target = keyId;
  audit.details = { context, ...extra, ...(keyId === undefined ? { defaultKey: true } : {}) };
}

function noteKey(audit: AuditDetails, keyId: string, keyVersion: number): void {
  audit.target = keyId;
  audit.details = { ...audit.details, keyVersion };
}

/**
 * Audit the key named in a blob's header even when the call then fails; returns that key id.
 * A malformed blob is refused here (before the guard, which needs its key).
 */
function noteBlob(audit: AuditDetails, blob: Buffer, context: EncryptionContext): string {
  audit.details = { context };
  let header: ReturnType<typeof parseBlob>;
  try {
    header = parseBlob(blob);
  } catch (err) {
    throw err instanceof KmsInvalidCiphertextError ? err : new KmsInvalidCiphertextError('ciphertext blob is malformed');
  }
  audit.target = header.keyId;
  audit.details.keyVersion = header.keyVersion;
  return header.keyId;
}
