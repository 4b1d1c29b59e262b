/**
 * gRPC channel credentials for etcd members named by IP address. grpc-js always sends the
 * target host as the TLS ServerName, and Node refuses an IP there (RFC 6066; warning DEP0123,
 * "will be ignored in a future version"). These credentials send a ServerName only for a DNS
 * name; the certificate is verified as before, against the target host, so an IP endpoint
 * still needs a matching IP SAN. `etcd3` builds its own credentials and takes no others, so
 * {@link useEtcdTls} swaps them into its hosts (checked: an unknown shape fails the start).
 */
import { isIP } from 'node:net';
import { connect, createSecureContext, type SecureContext } from 'node:tls';
import { CallCredentials, ChannelCredentials } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { RuntimeError } from '../common/errors.js';

/** `host` of a gRPC target path `host:port` or `[v6]:port`. */
export function targetHost(path: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(path);
  if (v6) return v6[1]!;
  const colon = path.lastIndexOf(':');
  return colon > 0 && path.indexOf(':') === colon ? path.slice(0, colon) : path;
}

type Connector = ReturnType<ChannelCredentials['_createSecureConnector']>;

class EtcdTlsCredentials extends ChannelCredentials {
  constructor(private readonly context: SecureContext) {
    super();
  }

  _isSecure(): boolean {
    return true;
  }

  _equals(other: ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(target: Parameters<ChannelCredentials['_createSecureConnector']>[0], _options: unknown, callCredentials?: CallCredentials): Connector {
    const host = targetHost(target.path);
    const context = this.context;
    const calls = callCredentials ?? CallCredentials.createEmpty();
    return {
      connect: (socket) =>
        new Promise((resolve, reject) => {
          // no servername: Node verifies the certificate against `host` (an IP against an IP SAN)
          const tls = connect({ socket, secureContext: context, host, ALPNProtocols: ['h2'], ...(isIP(host) ? {} : { servername: host }) }, () => {
            if (!tls.authorized) reject(tls.authorizationError);
            else resolve({ socket: tls, secure: true });
          });
          tls.on('error', reject);
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => calls,
      destroy: () => {},
    };
  }
}

/** Credentials with client certificate `cert`/`key`, trusting only `ca`. */
export function etcdTlsCredentials(ca: Buffer, cert: Buffer, key: Buffer): ChannelCredentials {
  return new EtcdTlsCredentials(createSecureContext({ ca, cert, key }));
}

/** Make every host of `client` connect with `credentials` (before its first call). */
export function useEtcdTls(client: Etcd3, credentials: ChannelCredentials): void {
  const hosts = (client as unknown as { pool?: { hosts?: Array<{ channelCredentials?: unknown }> } }).pool?.hosts;
  if (!Array.isArray(hosts) || hosts.length === 0 || !hosts.every((h) => h.channelCredentials instanceof ChannelCredentials)) {
    throw new RuntimeError('the etcd3 client changed shape: cannot give it our TLS credentials (check src/fleet/etcd-tls.ts)', 'INTERNAL');
  }
  for (const h of hosts) h.channelCredentials = credentials;
}
