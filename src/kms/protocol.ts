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
 * Grants (root-only Unix socket only; see `grants.ts`):
 *
 *     POST   /v1/grants   {hostId, publicKey, keyId, operations, context?}   → 201 Grant   CreateGrant
 *     GET    /v1/grants                                → {grants: Grant[]}                ListGrants
 *     DELETE /v1/grants/:id                            → Grant                            RevokeGrant
 *
 * The network listener (`kms serve --listen HOST:PORT`) serves only the data-key routes
 * (generate-data-key, generate-data-key-without-plaintext, decrypt, re-encrypt, and
 * describe-key) to hosts authenticated by their X25519 host key, each call checked against
 * the grants; the same HTTP requests travel inside an encrypted channel (`channel.ts`, wire
 * format below).
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
  grants: '/v1/grants',
  grant: (id: string): string => `/v1/grants/${encodeURIComponent(id)}`,
} as const;

/** What a grant allows (AWS KMS's grant operations of the same names). */
export const GRANT_OPERATIONS = ['GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'Decrypt', 'ReEncrypt', 'DescribeKey'] as const;
export type GrantOperation = (typeof GRANT_OPERATIONS)[number];

/**
 * A grant: host `hostId`, proved by its X25519 `publicKey`, may call `operations` on master
 * key `keyId` when the call's encryption context contains every pair of `context` (a value
 * ending in `*` matches by prefix: `volume=vol-*`); an empty `context` matches any.
 */
export interface Grant {
  grantId: string;
  hostId: string;
  /** Base64, as `nitride key show` prints it. */
  publicKey: string;
  /** Canonical key id (an alias given at creation is resolved). */
  keyId: string;
  operations: GrantOperation[];
  context: Record<string, string>;
  createdAt: string;
}

export interface CreateGrantRequest {
  hostId: string;
  publicKey: string;
  keyId: string;
  operations: GrantOperation[];
  context?: Record<string, string>;
}

/**
 * Wire format of the network KMS (TCP). Every frame is a u32 big-endian length, then a
 * message laid out as the VPC underlay's (`src/vpc/constants.ts`): the client sends a Noise
 * IK initiation (type 1, from its host key), the KMS answers with a response (type 2) or a
 * refusal (type 6: `u8 6 | 3 zero | UTF-8 reason`, unauthenticated, then it closes), and
 * from then on both send records (type 4: `u8 4 | 3 zero | u32 receiver index LE | u64
 * counter LE | ChaCha20-Poly1305 ciphertext | 16-byte tag`, nonce = 4 zero bytes + the
 * counter, the 16-byte header as associated data) that carry the HTTP bytes of the API above.
 */
export const KMS_WIRE_LENGTH_BYTES = 4;
export const KMS_WIRE_REFUSAL = 6;
/** Largest plaintext in one record; HTTP writes are split to fit. */
export const KMS_WIRE_MAX_RECORD_PLAINTEXT = 16 * 1024;
/** Largest frame accepted (a record of the largest plaintext); anything longer ends the connection. */
export const KMS_WIRE_MAX_FRAME = KMS_WIRE_MAX_RECORD_PLAINTEXT + 32;
/** The handshake's prologue identifier: a KMS handshake can never be taken for a VPC one. */
export const KMS_WIRE_IDENTIFIER = 'nitride v1 kms channel';

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
  /** The network listener, when `--listen` was given. */
  network: KmsNetworkStatus | null;
}

/** The network listener's state and its refusals (dropped and counted, never answered). */
export interface KmsNetworkStatus {
  listen: string;
  /** The KMS's X25519 public key (base64): what daemons pin with `--kms-public-key`. */
  publicKey: string;
  grants: number;
  connections: { accepted: number; open: number; refused: number };
  /** Handshakes rejected, by reason (unknown-peer = no grant names the key). */
  handshakeRejects: Record<string, number>;
  /** Records dropped after the handshake: replayed, forged (failed authentication), malformed frames. */
  records: { replayed: number; forged: number; malformed: number };
}

/** Default places (a separate service from the daemon, with its own state and socket). */
export const DEFAULT_KMS_STATE_DIR = '/var/lib/nitride-kms';
export const DEFAULT_KMS_SOCKET = '/run/nitride-kms/kms.sock';
