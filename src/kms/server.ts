/**
 * `nitride kms serve`: the KMS as its own process, with its own state directory (0700:
 * keystore.json, audit.log, lock) and its own root-only Unix socket, separate from the
 * daemon (its own systemd unit). It fronts a file-backed {@link LocalKeyProvider} with the
 * control server (HTTP + JSON, SO_PEERCRED gate, strict validation, audit of every call);
 * routes and the binary framing of secret replies are in `protocol.ts`.
 *
 * Start order: state dir lock → audit log → key store → socket → ready; stop reverses it
 * and wipes the master keys from memory.
 */
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import { VERSION } from '../common/package-info.js';
import { AuditLog } from '../control/audit.js';
import { BinaryReply, ControlServer, type AuditDetails } from '../control/server.js';
import type { StateDir } from '../common/state-dir.js';
import { startService, stopService } from '../common/service.js';
import type { Logger } from '../log/logger.js';
import { sdNotify } from '../native/addon.js';
import { MAX_BLOB_BYTES, MAX_CONTEXT_PAIRS, parseBlob } from './blob.js';
import { LocalKeyProvider } from './local.js';
import {
  HEADER_CIPHERTEXT_BLOB,
  HEADER_KEY_ID,
  HEADER_KEY_VERSION,
  KMS_API,
  SECRET_CONTENT_TYPE,
  type KeyAction,
  type KmsStatus,
} from './protocol.js';
import { MAX_DATA_KEY_BYTES, type EncryptionContext, type KeyMetadata } from './provider.js';
import { loadSodium, wipe, type Sodium } from './sodium.js';

export interface KmsServerOptions {
  /** State directory (created 0700): keystore.json, audit.log, lock file. */
  stateDir: string;
  /** The KMS socket (mode 0600 in a 0700 directory). */
  socketPath: string;
  /** Root logger; the KMS logs with component `kms`. */
  logger: Logger;
  /** A listening socket passed by systemd (socket activation) to serve instead of binding `socketPath`. */
  listenFd?: number;
  /** Allow deletion waiting periods of 0–6 days (tests). */
  allowImmediateDeletion?: boolean;
  /** Period of the deletion-date check, ms (default 60 000). */
  sweepIntervalMs?: number;
}

const Base64 = z
  .string()
  .max(Math.ceil(MAX_BLOB_BYTES / 3) * 4)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
const Context = z.record(z.string(), z.string()).refine((c) => Object.keys(c).length <= MAX_CONTEXT_PAIRS, `at most ${MAX_CONTEXT_PAIRS} pairs`);
const KeyRef = z.string().min(1).max(300);
const GenerateBody = z
  .object({ keyId: KeyRef.optional(), context: Context, bytes: z.number().int().min(1).max(MAX_DATA_KEY_BYTES).optional() })
  .strict();

export class KmsServer {
  private readonly startedAt = new Date();
  private stopping: Promise<void> | undefined;
  private readonly log: Logger;

  private constructor(
    private readonly options: KmsServerOptions,
    private readonly sodium: Sodium,
    private readonly state: StateDir,
    private readonly audit: AuditLog,
    private readonly provider: LocalKeyProvider,
    private readonly control: ControlServer,
  ) {
    this.log = options.logger.child({ component: 'kms' });
  }

  static async start(options: KmsServerOptions): Promise<KmsServer> {
    const log = options.logger.child({ component: 'kms' });
    const sodium = await loadSodium();
    return startService('kms', options.stateDir, async (state, undo) => {
      await fs.chmod(state.root, 0o700);
      const audit = await AuditLog.open(state.file('audit.log'), options.logger);
      undo(() => audit.close());
      const provider = await LocalKeyProvider.open({
        file: state.file('keystore.json'),
        allowImmediateDeletion: options.allowImmediateDeletion ?? false,
        logger: log,
        ...(options.sweepIntervalMs !== undefined ? { sweepIntervalMs: options.sweepIntervalMs } : {}),
      });
      undo(() => provider.close());
      const control = new ControlServer({
        socketPath: options.socketPath,
        logger: options.logger,
        audit,
        component: 'kms',
        socketLabel: 'KMS socket',
        unroutedAudit: 'kms.UnknownCall',
        ...(options.listenFd !== undefined ? { listenFd: options.listenFd } : {}),
      });
      const server = new KmsServer(options, sodium, state, audit, provider, control);
      server.registerRoutes();
      await control.listen();
      sdNotify('READY=1');
      log.info({ version: VERSION, stateDir: state.root, socket: options.socketPath, allowImmediateDeletion: options.allowImmediateDeletion ?? false }, 'kms started');
      return server;
    });
  }

  /** Graceful stop; idempotent. */
  stop(reason: string): Promise<void> {
    this.stopping ??= stopService('kms', reason, this.log, [
      ['socket', () => this.control.close()],
      ['keystore', () => this.provider.close()],
      ['audit', () => this.audit.close()],
      ['state', () => this.state.release()],
    ]);
    return this.stopping;
  }

  private async status(): Promise<KmsStatus> {
    return {
      service: 'nitride-kms',
      version: VERSION,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      stateDir: this.state.root,
      socket: this.options.socketPath,
      keys: (await this.provider.listKeys()).length,
      allowImmediateDeletion: this.options.allowImmediateDeletion ?? false,
    };
  }

  private registerRoutes(): void {
    const c = this.control;
    const p = this.provider;
    c.register({ method: 'GET', path: KMS_API.status, audit: 'kms.Status', handle: () => this.status() });

    c.register({
      method: 'POST',
      path: KMS_API.keys,
      audit: 'kms.CreateKey',
      status: 201,
      body: z.object({ alias: z.string().min(1).max(300).optional(), description: z.string().max(8192).optional() }).strict(),
      handle: async ({ body, audit, signal }) => {
        audit.details = body.alias ? { alias: body.alias } : {};
        const meta = await p.createKey({ ...body, signal });
        return keyResult(audit, meta);
      },
    });
    c.register({
      method: 'GET',
      path: KMS_API.keys,
      audit: 'kms.ListKeys',
      handle: async ({ signal }) => ({ keys: await p.listKeys({ signal }) }),
    });
    c.register({
      method: 'GET',
      path: '/v1/keys/:ref',
      audit: 'kms.DescribeKey',
      auditTarget: 'ref',
      handle: async ({ params, audit, signal }) => keyResult(audit, await p.describeKey(params.ref!, { signal })),
    });
    const actions: Array<[KeyAction, string, (ref: string, signal: AbortSignal) => Promise<KeyMetadata>]> = [
      ['enable', 'kms.EnableKey', (ref, signal) => p.enableKey(ref, { signal })],
      ['disable', 'kms.DisableKey', (ref, signal) => p.disableKey(ref, { signal })],
      ['rotate', 'kms.RotateKey', (ref, signal) => p.rotateKey(ref, { signal })],
      ['cancel-deletion', 'kms.CancelKeyDeletion', (ref, signal) => p.cancelKeyDeletion(ref, { signal })],
    ];
    for (const [action, auditName, run] of actions) {
      c.register({
        method: 'POST',
        path: `/v1/keys/:ref/${action}`,
        audit: auditName,
        auditTarget: 'ref',
        handle: async ({ params, audit, signal }) => keyResult(audit, await run(params.ref!, signal)),
      });
    }
    c.register({
      method: 'POST',
      path: '/v1/keys/:ref/schedule-deletion',
      audit: 'kms.ScheduleKeyDeletion',
      auditTarget: 'ref',
      body: z.object({ days: z.number().int().min(0).max(365).optional() }).strict(),
      handle: async ({ params, body, audit, signal }) => {
        audit.details = { days: body.days ?? null };
        return keyResult(audit, await p.scheduleKeyDeletion(params.ref!, body.days, { signal }));
      },
    });

    c.register({
      method: 'POST',
      path: KMS_API.generateDataKeyWithoutPlaintext,
      audit: 'kms.GenerateDataKeyWithoutPlaintext',
      body: GenerateBody,
      handle: async ({ body, audit, signal }) => {
        noteRequest(audit, body.keyId, body.context, { bytes: body.bytes ?? 64 });
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
      handle: async ({ body, audit, signal }) => {
        noteRequest(audit, body.keyId, body.context, { bytes: body.bytes ?? 64 });
        const r = await p.generateDataKey(body.keyId, body.context, { ...(body.bytes ? { bytes: body.bytes } : {}), signal });
        noteKey(audit, r.keyId, r.keyVersion);
        return this.secretReply(r.plaintext, {
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
      handle: async ({ body, audit, signal }) => {
        const blob = Buffer.from(body.ciphertextBlob, 'base64');
        noteBlob(audit, blob, body.context);
        const r = await p.decrypt(blob, body.context, { signal });
        return this.secretReply(r.plaintext, { [HEADER_KEY_ID]: r.keyId, [HEADER_KEY_VERSION]: String(r.keyVersion) });
      },
    });
    c.register({
      method: 'POST',
      path: KMS_API.reEncrypt,
      audit: 'kms.ReEncrypt',
      body: z.object({ ciphertextBlob: Base64, context: Context, destinationKeyId: KeyRef.optional(), destinationContext: Context.optional() }).strict(),
      handle: async ({ body, audit, signal }) => {
        const blob = Buffer.from(body.ciphertextBlob, 'base64');
        noteBlob(audit, blob, body.context);
        if (body.destinationKeyId) audit.details = { ...audit.details, destinationKeyId: body.destinationKeyId };
        if (body.destinationContext) audit.details = { ...audit.details, destinationContext: body.destinationContext };
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

  /** Plaintext key bytes as the raw reply body; wiped once written (or the peer is gone). */
  private secretReply(plaintext: Buffer, headers: Record<string, string>): BinaryReply {
    return new BinaryReply(plaintext, { contentType: SECRET_CONTENT_TYPE, headers, onSent: () => wipe(this.sodium, plaintext) });
  }
}

/** Audit a key-management result under the canonical key id. */
function keyResult(audit: AuditDetails, meta: KeyMetadata): KeyMetadata {
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

/** Audit the key named in a blob's header even when the call then fails. */
function noteBlob(audit: AuditDetails, blob: Buffer, context: EncryptionContext): void {
  audit.details = { context };
  try {
    const header = parseBlob(blob);
    audit.target = header.keyId;
    audit.details.keyVersion = header.keyVersion;
  } catch {
    // malformed: the provider call reports it
  }
}
