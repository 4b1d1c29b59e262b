/** Where the daemon's metrics are served: `GET /metrics` on the control socket, and optionally a loopback TCP port. */
import { DAEMON_API } from '../api/daemon.js';
import { BinaryReply, type ControlServer } from '../control/server.js';
import { METRICS_CONTENT_TYPE, type DaemonMetrics } from './daemon-metrics.js';
import { MetricsHttpListener, parseLoopbackListen } from './http-listener.js';
import type { KeptListener } from '../common/fd-store.js';

export interface MetricsEndpoints {
  /** host:port of the TCP listener, if configured. */
  tcp: string | null;
  close(): Promise<void>;
}

export async function serveMetrics(control: ControlServer, metrics: DaemonMetrics, listen: string | undefined, kept?: KeptListener): Promise<MetricsEndpoints> {
  control.register({
    method: 'GET',
    path: DAEMON_API.metrics,
    handle: async () => new BinaryReply(Buffer.from(await metrics.text()), { contentType: METRICS_CONTENT_TYPE }),
  });
  if (listen === undefined) return { tcp: null, close: async () => {} };
  const { host, port } = parseLoopbackListen(listen);
  const listener = new MetricsHttpListener(async () => ({ contentType: METRICS_CONTENT_TYPE, body: await metrics.text() }));
  const bound = await listener.listen(host, port, kept);
  return { tcp: `${host.includes(':') ? `[${host}]` : host}:${bound}`, close: () => listener.close() };
}
