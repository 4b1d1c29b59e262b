/**
 * The optional metrics TCP listener (`--metrics-listen`): GET /metrics only, on a loopback
 * address only, so a local Prometheus (or node exporter's proxy) can scrape without root.
 * Anything that is not loopback is refused at configuration time: the daemon exposes no
 * network port for observation.
 */
import http from 'node:http';
import net from 'node:net';
import { RuntimeError, UsageError, oneLine } from '../common/errors.js';
import { listenTcpKept, type KeptListener } from '../common/fd-store.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from '../common/endpoint.js';

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Parse `HOST:PORT` and insist HOST is a numeric loopback address (127.0.0.0/8 or ::1). */
export function parseLoopbackListen(text: string, what = '--metrics-listen'): Endpoint {
  const { host, port } = parseEndpoint(text, what, { numeric: true, shape: 'LOOPBACK-IP:PORT (e.g. 127.0.0.1:9464)' });
  if (!LOOPBACK.check(host, net.isIPv4(host) ? 'ipv4' : 'ipv6')) throw new UsageError(`${what} must be a loopback address (127.0.0.0/8 or [::1]): metrics are never served to the network, got '${text}'`);
  return { host, port };
}

export class MetricsHttpListener {
  private readonly server: http.Server;

  constructor(render: () => Promise<{ contentType: string; body: string }>) {
    this.server = http.createServer({ requestTimeout: 10_000 }, (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
        return;
      }
      render().then(
        ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${oneLine(err)}\n`),
      );
    });
    this.server.maxConnections = 16;
  }

  /** Listen; resolves with the bound port (0 picks one). */
  async listen(host: string, port: number, kept?: KeptListener): Promise<number> {
    const bind = () =>
      new Promise<void>((resolve, reject) => {
        this.server.once('error', (err) => reject(new RuntimeError(`cannot listen for metrics on ${formatEndpoint({ host, port })}: ${oneLine(err)}`, 'LISTEN')));
        this.server.listen({ host, port }, () => resolve());
      });
    await listenTcpKept(this.server, host, port, bind, kept);
    return (this.server.address() as net.AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
