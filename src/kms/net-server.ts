/**
 * `nitride kms serve --listen HOST:PORT`: the KMS for a fleet. Hosts connect over TCP and
 * prove their X25519 host key in the channel's handshake (`channel.ts`); a key that no grant
 * names is refused there (audited as kms.Connect). Inside the channel the same HTTP API as the
 * Unix socket serves only the data-key routes, each call checked against the caller's grants
 * and audited with the calling host. Replayed, forged and malformed frames are dropped and
 * counted (status `network.records`); the listener keeps serving.
 *
 * The KMS's own static key pair is a data key of its default master key (context
 * `purpose=kms-transport-key`), stored only wrapped (`<state>/transport-key.json`) and
 * unwrapped at start, like a daemon's host key.
 */
import type net from 'node:net';
import { z } from 'zod';
import { NotFoundError, RuntimeError, oneLine } from '../common/errors.js';
import { formatEndpoint, parseEndpoint } from '../common/endpoint.js';
import { readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import type { StateDir } from '../common/state-dir.js';
import type { AuditLog, Caller } from '../control/audit.js';
import { ControlServer } from '../control/server.js';
import type { Logger } from '../log/logger.js';
import { clamp, encodeKey, publicKeyOf, type HandshakePeer, type HandshakeRejectReason, type KeyPair } from '../vpc/handshake.js';
import type { RecordDrop } from './channel.js';
import { registerDataKeyRoutes, type DataKeyGuard } from './data-key-routes.js';
import { findGrant, hostIdOf, type GrantStore } from './grants.js';
import type { LocalKeyProvider } from './local.js';
import type { KmsNetworkStatus } from './protocol.js';
import { DEFAULT_KEY_ALIAS, KmsAccessDeniedError } from './provider.js';
import { channelServer, type SecureStream } from './secure-stream.js';
import { wipe, type Sodium } from './sodium.js';

const TRANSPORT_KEY_CONTEXT = { purpose: 'kms-transport-key' };
const TransportKeyFile = z.object({ format: z.literal('nitride-kms-transport-key'), ciphertextBlob: z.string() }).strict();

interface HostRecord extends HandshakePeer {
  publicKey: string;
}

export interface KmsNetworkOptions {
  listen: string;
  sodium: Sodium;
  provider: LocalKeyProvider;
  grants: GrantStore;
  audit: AuditLog;
  state: StateDir;
  logger: Logger;
}

export class KmsNetwork {
  private readonly log: Logger;
  private readonly hosts = new Map<string, HostRecord>();
  private readonly open = new Set<SecureStream>();
  private readonly counts = { accepted: 0, refused: 0 };
  private readonly rejects: Partial<Record<HandshakeRejectReason, number>> = {};
  private readonly records: Record<RecordDrop, number> = { replayed: 0, forged: 0, malformed: 0 };
  private server: net.Server | undefined;
  private control: ControlServer | undefined;
  private boundTo = '';

  private constructor(
    private readonly options: KmsNetworkOptions,
    private readonly keys: KeyPair,
  ) {
    this.log = options.logger.child({ component: 'kms-net' });
  }

  static async start(options: KmsNetworkOptions): Promise<KmsNetwork> {
    const { host, port } = parseEndpoint(options.listen, '--listen');
    const keys = await transportKey(options);
    const network = new KmsNetwork(options, keys);
    try {
      await network.listen(host, port);
    } catch (err) {
      wipe(options.sodium, keys.privateKey);
      throw err;
    }
    return network;
  }

  get publicKey(): string {
    return encodeKey(this.keys.publicKey);
  }

  status(): KmsNetworkStatus {
    return {
      listen: this.boundTo,
      publicKey: this.publicKey,
      grants: this.options.grants.list().length,
      connections: { accepted: this.counts.accepted, open: this.open.size, refused: this.counts.refused },
      handshakeRejects: { ...this.rejects },
      records: { ...this.records },
    };
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.open) s.destroy();
    await this.control?.close();
    wipe(this.options.sodium, this.keys.privateKey);
  }

  private async listen(host: string, port: number): Promise<void> {
    const { sodium, audit, logger } = this.options;
    const control = new ControlServer({ socketPath: this.options.listen, logger, audit, component: 'kms-net', socketLabel: 'KMS network listener', unroutedAudit: 'kms.UnknownCall' });
    registerDataKeyRoutes(control, this.options.provider, sodium, this.guard);
    this.control = control;
    const server = channelServer<HostRecord>({
      sodium,
      local: this.keys,
      lookup: (key) => this.lookup(key),
      onSession: (stream, peer, address) => {
        this.counts.accepted++;
        this.open.add(stream);
        stream.once('close', () => this.open.delete(stream));
        const caller: Caller = { host: hostIdOf(this.options.grants.list(), peer.publicKey) ?? '?', publicKey: peer.publicKey, address };
        control.serve(stream, caller);
      },
      onReject: (reason, address, publicKey) => void this.rejected(reason, address, publicKey),
      onDrop: (reason) => {
        this.records[reason]++;
        this.log.warn({ reason }, `dropped a ${reason} record`);
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err: oneLine(err) }, 'network listener error'));
    const bound = server.address() as net.AddressInfo;
    this.boundTo = formatEndpoint({ host: bound.address, port: bound.port });
    this.server = server;
    this.log.info({ listen: this.boundTo, publicKey: this.publicKey }, 'kms network listener up');
  }

  /** The host record of a key some grant names (one per key, so replay checks span connections). */
  private lookup(key: Buffer): HostRecord | undefined {
    const publicKey = encodeKey(key);
    if (hostIdOf(this.options.grants.list(), publicKey) === undefined) return undefined;
    let record = this.hosts.get(publicKey);
    if (!record) {
      record = { staticPublic: Buffer.from(key), publicKey };
      this.hosts.set(publicKey, record);
    }
    return record;
  }

  private async rejected(reason: HandshakeRejectReason, address: string, publicKey: Buffer | undefined): Promise<void> {
    this.counts.refused++;
    this.rejects[reason] = (this.rejects[reason] ?? 0) + 1;
    this.log.warn({ reason, address, ...(publicKey ? { publicKey: encodeKey(publicKey) } : {}) }, 'refused a KMS connection');
    if (reason !== 'unknown-peer' || !publicKey) return;
    try {
      await this.options.audit.record({
        caller: { host: '?', publicKey: encodeKey(publicKey), address },
        action: 'kms.Connect',
        status: 403,
        error: 'KMS_ACCESS_DENIED',
      });
    } catch (err) {
      this.log.error({ err: oneLine(err) }, 'cannot write audit record');
    }
  }

  /** Every network call: the calling host must hold a grant for this operation, key and context. */
  private readonly guard: DataKeyGuard = async (caller, operation, keyRef, context) => {
    if (!caller || !('host' in caller)) throw new KmsAccessDeniedError('unauthenticated call');
    const ref = keyRef ?? DEFAULT_KEY_ALIAS;
    const grants = this.options.grants.list();
    const denied = () =>
      new KmsAccessDeniedError(`host ${caller.host} has no grant for ${operation} on ${ref}${context ? ` with context ${JSON.stringify(context)}` : ''}`);
    let keyId: string;
    try {
      keyId = (await this.options.provider.describeKey(ref)).keyId;
    } catch (err) {
      // a key the host may not use is not told apart from one that does not exist
      if (err instanceof NotFoundError) throw denied();
      throw err;
    }
    const ok =
      context === undefined
        ? grants.some((g) => g.publicKey === caller.publicKey && g.keyId === keyId && g.operations.includes(operation))
        : findGrant(grants, caller.publicKey, operation, keyId, context) !== undefined;
    if (!ok) throw denied();
  };
}

/** The KMS's static key pair: its wrapped private key unwrapped, or made and stored wrapped first. */
async function transportKey(options: KmsNetworkOptions): Promise<KeyPair> {
  const { provider, sodium, state } = options;
  const file = state.file('transport-key.json');
  let privateKey: Buffer;
  const raw = await readJsonFile<unknown>(file);
  const parsed = raw === undefined ? undefined : TransportKeyFile.safeParse(raw);
  if (parsed && !parsed.success) throw new RuntimeError(`${file} is not a KMS transport key file`, 'STATE_CORRUPT');
  const stored = parsed?.data;
  if (stored) {
    privateKey = (await provider.decrypt(Buffer.from(stored.ciphertextBlob, 'base64'), TRANSPORT_KEY_CONTEXT)).plaintext;
  } else {
    const generated = await provider.generateDataKey(undefined, TRANSPORT_KEY_CONTEXT, { bytes: 32 });
    privateKey = generated.plaintext;
    try {
      await writeFileAtomic(file, JSON.stringify({ format: 'nitride-kms-transport-key', ciphertextBlob: generated.ciphertextBlob.toString('base64') }) + '\n', 0o600);
    } catch (err) {
      wipe(sodium, privateKey);
      throw err;
    }
  }
  clamp(privateKey);
  return { privateKey, publicKey: publicKeyOf(sodium, privateKey) };
}
