/**
 * The KMS wire protocol: HTTP/1.1 on the KMS's own root-only Unix socket, JSON requests.
 *
 *     GET  /v1/status                                   KMS status (no key data)
 *     POST /v1/keys                       {alias?, description?}        → 201 KeyMetadata   CreateKey
 *     GET  /v1/keys                                     → {keys: KeyMetadata[]}            ListKeys
 *     GET  /v1/keys/:ref                                → KeyMetadata                      DescribeKey
 *     POST /v1/keys/:ref/enable | disable | rotate | cancel-deletion   → KeyMetadata
 *     POST /v1/keys/:ref/schedule-deletion {days?}      → KeyMetadata                      ScheduleKeyDeletion
 *     POST /v1/generate-data-key-without-plaintext {keyId?, context, bytes?}
 *                                                       → {keyId, keyVersion, ciphertextBlob}
 *     POST /v1/generate-data-key          {keyId?, context, bytes?}    → SECRET reply
 *     POST /v1/decrypt                    {ciphertextBlob, context}    → SECRET reply
 *     POST /v1/re-encrypt                 {ciphertextBlob, context, destinationKeyId?, destinationContext?}
 *                                                       → {keyId, keyVersion, ciphertextBlob, sourceKeyId, sourceKeyVersion}
 *
 * `:ref` is a key id or a URL-encoded alias (`alias%2Fname`); blobs travel as base64 in
 * JSON (they are not secret). A SECRET reply carries plaintext key bytes and is never
 * JSON, so neither side ever holds them in a JS string: `Content-Type:
 * application/octet-stream`, the body is exactly the raw data key, and the metadata is in
 * headers (`Nitride-Kms-Key-Id`, `Nitride-Kms-Key-Version`, and for generate-data-key
 * `Nitride-Kms-Ciphertext-Blob`, base64). Errors are the control API's
 * `{ "error": { "code", "message" } }` with the codes of `provider.ts`.
 */
export const KMS_API = {
  status: '/v1/status',
  keys: '/v1/keys',
  key: (ref: string): string => `/v1/keys/${encodeURIComponent(ref)}`,
  keyAction: (ref: string, action: KeyAction): string => `/v1/keys/${encodeURIComponent(ref)}/${action}`,
  generateDataKey: '/v1/generate-data-key',
  generateDataKeyWithoutPlaintext: '/v1/generate-data-key-without-plaintext',
  decrypt: '/v1/decrypt',
  reEncrypt: '/v1/re-encrypt',
} as const;

export type KeyAction = 'enable' | 'disable' | 'rotate' | 'schedule-deletion' | 'cancel-deletion';

export const SECRET_CONTENT_TYPE = 'application/octet-stream';
export const HEADER_KEY_ID = 'nitride-kms-key-id';
export const HEADER_KEY_VERSION = 'nitride-kms-key-version';
export const HEADER_CIPHERTEXT_BLOB = 'nitride-kms-ciphertext-blob';

/** What `GET /v1/status` returns. */
export interface KmsStatus {
  service: 'nitride-kms';
  version: string;
  pid: number;
  startedAt: string;
  stateDir: string;
  socket: string;
  keys: number;
  allowImmediateDeletion: boolean;
}

/** Default places (a separate service from the daemon, with its own state and socket). */
export const DEFAULT_KMS_STATE_DIR = '/var/lib/nitride-kms';
export const DEFAULT_KMS_SOCKET = '/run/nitride-kms/kms.sock';
