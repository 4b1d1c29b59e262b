/**
 * The daemon's client of a network KMS (`nitride kms serve --listen`): {@link KmsClient}
 * over the channel's agent, authenticated with this host's key (the VPC host key, which the
 * host's own Unix-socket KMS keeps wrapped: the key that proves the host to the network KMS
 * cannot be wrapped by that same KMS).
 */
import { parseEndpoint } from '../common/endpoint.js';
import type { KeyPair } from '../vpc/handshake.js';
import { KmsClient } from './client.js';
import { ChannelAgent } from './secure-stream.js';
import { wipe, type Sodium } from './sodium.js';

export interface NetworkKmsOptions {
  /** HOST:PORT of the KMS. */
  endpoint: string;
  /** The KMS's public key (32 bytes), pinned. */
  kmsPublicKey: Buffer;
  sodium: Sodium;
  /** This host's key pair; called once (again after a failure). The client wipes its copy at close. */
  hostKey: () => Promise<KeyPair>;
  timeoutMs?: number;
}

export class NetworkKms {
  readonly client: KmsClient;
  private readonly agent: ChannelAgent;
  private keys: Promise<KeyPair> | undefined;

  constructor(private readonly options: NetworkKmsOptions) {
    const { host, port } = parseEndpoint(options.endpoint, '--kms-endpoint');
    this.agent = new ChannelAgent({ sodium: options.sodium, host, port, kmsPublicKey: options.kmsPublicKey, hostKey: () => this.hostKey() });
    this.client = new KmsClient({ network: { endpoint: options.endpoint, agent: this.agent }, ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) });
  }

  /** Close the connection and wipe the host key copy. */
  async close(): Promise<void> {
    this.agent.destroy();
    const keys = this.keys;
    this.keys = undefined;
    if (keys) wipe(this.options.sodium, (await keys.catch(() => undefined))?.privateKey);
  }

  private hostKey(): Promise<KeyPair> {
    this.keys ??= this.options.hostKey().catch((err: unknown) => {
      this.keys = undefined;
      throw err;
    });
    return this.keys;
  }
}
