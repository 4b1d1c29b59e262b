/**
 * {@link KeyProvider} (and {@link KeyAdmin}) over the KMS socket: what the daemon and the
 * `nitride kms` verbs use. Plaintext data keys arrive as raw reply bytes (see
 * `protocol.ts`) into a Buffer the caller owns and must wipe; the transport's own chunk
 * copies are zeroed before the call returns. Failures are the typed errors of
 * `provider.ts`; an unreachable KMS is KMS_UNAVAILABLE.
 */
import type http from 'node:http';
import { NitrideError, RuntimeError } from '../common/errors.js';
import { ApiError, ControlClient, apiErrorOf, localErrorOf, type RawReply } from '../control/client.js';
import type { HttpMethod } from '../api/control.js';
import {
  DEFAULT_KMS_SOCKET,
  HEADER_CIPHERTEXT_BLOB,
  HEADER_KEY_ID,
  HEADER_KEY_VERSION,
  KMS_API,
  SECRET_CONTENT_TYPE,
  type CreateGrantRequest,
  type Grant,
  type KeyAction,
  type KmsStatus,
} from './protocol.js';
import {
  KmsUnavailableError,
  kmsErrorFromCode,
  type CreateKeyOptions,
  type EncryptionContext,
  type GenerateDataKeyOptions,
  type GeneratedDataKey,
  type KeyAdmin,
  type KeyMetadata,
  type KeyProvider,
  type KmsCallOptions,
  type PlaintextDataKey,
  type ReEncryptOptions,
  type ReEncryptResult,
  type WrappedDataKey,
} from './provider.js';

export interface KmsClientOptions {
  /** The KMS socket (default `/run/nitride-kms/kms.sock`). */
  socketPath?: string;
  /** A network KMS instead: its HOST:PORT and the channel's agent (`secure-stream.ts`). */
  network?: { endpoint: string; agent: http.Agent };
  /** Per-call timeout in ms (default 30 s). */
  timeoutMs?: number;
}

interface WrappedReply {
  keyId: string;
  keyVersion: number;
  ciphertextBlob: string;
}

export class KmsClient implements KeyProvider, KeyAdmin {
  readonly socketPath: string;
  private readonly http: ControlClient;

  constructor(options: KmsClientOptions = {}) {
    this.socketPath = options.network?.endpoint ?? options.socketPath ?? DEFAULT_KMS_SOCKET;
    this.http = new ControlClient({
      socketPath: this.socketPath,
      timeoutMs: options.timeoutMs ?? 30_000,
      serviceName: 'nitride KMS',
      socketLabel: 'KMS socket',
      ...(options.network ? { agent: options.network.agent } : {}),
    });
  }

  status(options: KmsCallOptions = {}): Promise<KmsStatus> {
    return this.json('GET', KMS_API.status, undefined, options.signal);
  }

  async generateDataKeyWithoutPlaintext(keyId: string | undefined, context: EncryptionContext, options: GenerateDataKeyOptions = {}): Promise<WrappedDataKey> {
    const r = await this.json<WrappedReply>('POST', KMS_API.generateDataKeyWithoutPlaintext, generateBody(keyId, context, options), options.signal);
    return wrapped(r);
  }

  async generateDataKey(keyId: string | undefined, context: EncryptionContext, options: GenerateDataKeyOptions = {}): Promise<GeneratedDataKey> {
    const { plaintext, keyId: id, keyVersion, headers } = await this.secret(KMS_API.generateDataKey, generateBody(keyId, context, options), options.signal);
    const blob = headers[HEADER_CIPHERTEXT_BLOB];
    if (typeof blob !== 'string') {
      const { loadSodium, wipe } = await import('./sodium.js');
      wipe(await loadSodium(), plaintext);
      throw new KmsUnavailableError('the KMS reply lacks the ciphertext blob');
    }
    return { keyId: id, keyVersion, ciphertextBlob: Buffer.from(blob, 'base64'), plaintext };
  }

  async decrypt(ciphertextBlob: Uint8Array, context: EncryptionContext, options: KmsCallOptions = {}): Promise<PlaintextDataKey> {
    const { plaintext, keyId, keyVersion } = await this.secret(KMS_API.decrypt, { ciphertextBlob: base64(ciphertextBlob), context }, options.signal);
    return { keyId, keyVersion, plaintext };
  }

  async reEncrypt(ciphertextBlob: Uint8Array, context: EncryptionContext, destinationKeyId?: string, options: ReEncryptOptions = {}): Promise<ReEncryptResult> {
    const r = await this.json<WrappedReply & { sourceKeyId: string; sourceKeyVersion: number }>(
      'POST',
      KMS_API.reEncrypt,
      {
        ciphertextBlob: base64(ciphertextBlob),
        context,
        ...(destinationKeyId !== undefined ? { destinationKeyId } : {}),
        ...(options.destinationContext !== undefined ? { destinationContext: options.destinationContext } : {}),
      },
      options.signal,
    );
    return { ...wrapped(r), sourceKeyId: r.sourceKeyId, sourceKeyVersion: r.sourceKeyVersion };
  }

  createGrant(request: CreateGrantRequest, options: KmsCallOptions = {}): Promise<Grant> {
    return this.json('POST', KMS_API.grants, request, options.signal);
  }

  async listGrants(options: KmsCallOptions = {}): Promise<Grant[]> {
    return (await this.json<{ grants: Grant[] }>('GET', KMS_API.grants, undefined, options.signal)).grants;
  }

  revokeGrant(grantId: string, options: KmsCallOptions = {}): Promise<Grant> {
    return this.json('DELETE', KMS_API.grant(grantId), undefined, options.signal);
  }

  describeKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.json('GET', KMS_API.key(keyId), undefined, options.signal);
  }

  createKey(options: CreateKeyOptions = {}): Promise<KeyMetadata> {
    const body = {
      ...(options.alias !== undefined ? { alias: options.alias } : {}),
      ...(options.description !== undefined ? { description: options.description } : {}),
    };
    return this.json('POST', KMS_API.keys, body, options.signal);
  }

  async listKeys(options: KmsCallOptions = {}): Promise<KeyMetadata[]> {
    return (await this.json<{ keys: KeyMetadata[] }>('GET', KMS_API.keys, undefined, options.signal)).keys;
  }

  enableKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.action(keyId, 'enable', undefined, options);
  }

  disableKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.action(keyId, 'disable', undefined, options);
  }

  rotateKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.action(keyId, 'rotate', undefined, options);
  }

  scheduleKeyDeletion(keyId: string, days?: number, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.action(keyId, 'schedule-deletion', days === undefined ? {} : { days }, options);
  }

  cancelKeyDeletion(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.action(keyId, 'cancel-deletion', undefined, options);
  }

  private action(keyId: string, action: KeyAction, body: unknown, options: KmsCallOptions): Promise<KeyMetadata> {
    return this.json('POST', KMS_API.keyAction(keyId, action), body, options.signal);
  }

  private async json<T>(method: HttpMethod, path: string, body: unknown, signal: AbortSignal | undefined): Promise<T> {
    try {
      return await this.http.call<T>(method, path, body, signal);
    } catch (err) {
      throw translate(err);
    }
  }

  /**
   * A call whose success reply is raw key bytes; the Buffer returned is the only copy.
   * libsodium is imported only here and where such a reply is refused: the key-admin calls
   * (the CLI's `kms` verbs) never load it.
   */
  private async secret(path: string, body: unknown, signal: AbortSignal | undefined): Promise<{ plaintext: Buffer; keyId: string; keyVersion: number; headers: RawReply['headers'] }> {
    const { loadSodium, wipe } = await import('./sodium.js');
    const lib = await loadSodium();
    let reply: RawReply;
    try {
      reply = await this.http.request('POST', path, body, signal);
    } catch (err) {
      throw translate(err);
    }
    if (reply.status >= 400) {
      let json: unknown;
      try {
        json = this.http.json(reply);
      } catch (err) {
        throw translate(err);
      }
      throw translate(apiErrorOf(reply.status, json));
    }
    const keyId = reply.headers[HEADER_KEY_ID];
    const keyVersion = Number(reply.headers[HEADER_KEY_VERSION]);
    if (reply.headers['content-type'] !== SECRET_CONTENT_TYPE || typeof keyId !== 'string' || !Number.isInteger(keyVersion)) {
      wipe(lib, reply.body);
      throw new KmsUnavailableError(`the KMS at ${this.socketPath} sent a malformed key reply (HTTP ${reply.status})`);
    }
    return { plaintext: reply.body, keyId, keyVersion, headers: reply.headers };
  }
}

function generateBody(keyId: string | undefined, context: EncryptionContext, options: GenerateDataKeyOptions): unknown {
  return { ...(keyId !== undefined ? { keyId } : {}), context, ...(options.bytes !== undefined ? { bytes: options.bytes } : {}) };
}

function wrapped(r: WrappedReply): WrappedDataKey {
  return { keyId: r.keyId, keyVersion: r.keyVersion, ciphertextBlob: Buffer.from(r.ciphertextBlob, 'base64') };
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Typed KMS errors for KMS codes, local error classes for the rest, KMS_UNAVAILABLE for transport failures. */
function translate(err: unknown): unknown {
  if (err instanceof ApiError) return kmsErrorFromCode(err.code, err.message) ?? localErrorOf(err);
  if (err instanceof RuntimeError && err.code !== 'ABORTED') return new KmsUnavailableError(err.message, { cause: err });
  if (err instanceof NitrideError) return err;
  return new KmsUnavailableError(`KMS call failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
