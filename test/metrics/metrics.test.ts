/**
 * Prometheus metrics against a real KMS and daemon: real NBD I/O (qemu-io, libnbd with
 * strict mode off for error replies), then scrapes of GET /metrics on the control socket and
 * on the loopback TCP listener.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/api/daemon.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { parseExposition, type Series } from '../../src/api/exposition.js';
import type { TopFrame } from '../../src/cli/commands/top.js';
import { nitride, startHost, tempDir, type TestHost } from '../helpers/nitride.js';
import { nbdPython, runOk } from '../helpers/run.js';

/** The value of the series `name` whose labels include every pair of `labels`. */
function sample(series: Series[], name: string, labels: Record<string, string> = {}): number | undefined {
  return series.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
const parse = parseExposition;

async function scrapeSocket(socket: string): Promise<{ contentType: string; text: string }> {
  const reply = await new ControlClient({ socketPath: socket }).request('GET', '/metrics');
  expect(reply.status).toBe(200);
  return { contentType: String(reply.headers['content-type']), text: reply.body.toString() };
}

function httpGet(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      })
      .on('error', reject);
  });
}

let host: TestHost;
let volume: VolumeInfo;
beforeAll(async () => {
  host = await startHost({ daemonArgs: ['--metrics-listen', '127.0.0.1:0'] });
  const r = await host.cli(['volume', 'create', '--json', '--size', '16M', '--name', 'metrics-vol']);
  expect(r.code, r.stderr).toBe(0);
  volume = JSON.parse(r.stdout) as VolumeInfo;
});
afterAll(async () => {
  await host?.stop();
});

describe('GET /metrics', () => {
  it('counts the requests, bytes, latencies and errno of real NBD I/O per volume', async () => {
    // 8 writes of 64 KiB and 4 reads of 64 KiB, one flush.
    const cmds = [];
    for (let i = 0; i < 8; i++) cmds.push('-c', `write -P 0x${(0x30 + i).toString(16)} ${i * 65536} 64k`);
    for (let i = 0; i < 4; i++) cmds.push('-c', `read -P 0x${(0x30 + i).toString(16)} ${i * 65536} 64k`);
    cmds.push('-c', 'flush');
    const out = await runOk('qemu-io', ['-f', 'raw', volume.uri, ...cmds]);
    expect(out).not.toMatch(/fail/i);
    // Two error replies: a read past the end (EINVAL) and a write past the end (ENOSPC).
    await nbdPython(`
import nbd, json
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(${JSON.stringify(volume.uri)})
errs = []
for fn in (lambda: h.pread(4096, (16<<20) - 512), lambda: h.pwrite(b'a'*4096, (16<<20) - 512)):
    try:
        fn()
    except nbd.Error as e:
        errs.append(e.errno)
h.shutdown()
print(json.dumps(errs))
`);

    const { contentType, text } = await scrapeSocket(host.daemon.socket);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = parse(text);
    const v = { volume: volume.id };
    expect(sample(m, 'nitride_volume_info', { ...v, name: 'metrics-vol', type: 'ebs' })).toBe(1);
    // qemu-io may split nothing here (64 KiB < its max transfer), so the counts are exact.
    expect(sample(m, 'nitride_volume_requests_total', { ...v, op: 'write' })).toBe(9);
    expect(sample(m, 'nitride_volume_bytes_total', { ...v, op: 'write' })).toBe(8 * 65536);
    expect(sample(m, 'nitride_volume_requests_total', { ...v, op: 'read' })).toBe(5);
    expect(sample(m, 'nitride_volume_bytes_total', { ...v, op: 'read' })).toBe(4 * 65536);
    expect(sample(m, 'nitride_volume_requests_total', { ...v, op: 'flush' })).toBeGreaterThanOrEqual(1);
    expect(sample(m, 'nitride_volume_errors_total', { ...v, errno: 'EINVAL' })).toBe(1);
    expect(sample(m, 'nitride_volume_errors_total', { ...v, errno: 'ENOSPC' })).toBe(1);
    // The histogram is cumulative and its +Inf bucket and count equal the requests.
    expect(sample(m, 'nitride_volume_request_duration_seconds_count', { ...v, op: 'write' })).toBe(9);
    expect(sample(m, 'nitride_volume_request_duration_seconds_bucket', { ...v, op: 'write', le: '+Inf' })).toBe(9);
    const buckets = m.filter((s) => s.name === 'nitride_volume_request_duration_seconds_bucket' && s.labels.volume === volume.id && s.labels.op === 'write').map((s) => s.value);
    expect(buckets.length).toBe(16);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!).toBeGreaterThanOrEqual(buckets[i - 1]!);
    const sum = sample(m, 'nitride_volume_request_duration_seconds_sum', { ...v, op: 'write' })!;
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(60);
    // Nobody is attached any more; the attach's Decrypt and the create's wrap were counted.
    expect(sample(m, 'nitride_volume_attached_consumers', v)).toBe(0);
    expect(sample(m, 'nitride_kms_calls_total', { operation: 'GenerateDataKeyWithoutPlaintext', outcome: 'ok' })).toBe(1);
    expect(sample(m, 'nitride_kms_calls_total', { operation: 'Decrypt', outcome: 'ok' })).toBeGreaterThanOrEqual(2);
    // Process metrics from prom-client.
    expect(sample(m, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(sample(m, 'nitride_vpc_up')).toBe(1);
  });

  it('shows attached clients while a connection is open', async () => {
    // nbdsh keeps the connection open while its script scrapes through the CLI-free socket.
    const script = `
import nbd, json, socket
h = nbd.NBD()
h.connect_uri(${JSON.stringify(volume.uri)})
h.pread(512, 0)
s = socket.socket(socket.AF_UNIX)
s.connect(${JSON.stringify(host.daemon.socket)})
s.sendall(b'GET /metrics HTTP/1.0\\r\\n\\r\\n')
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
h.shutdown()
lines = [l for l in data.decode().split('\\n') if l.startswith('nitride_volume_') and ${JSON.stringify(volume.id)} in l and ('attached' in l or '_connections' in l)]
print(json.dumps(lines))
`;
    const lines = await nbdPython<string[]>(script);
    expect(lines).toContain(`nitride_volume_attached_consumers{volume="${volume.id}"} 1`);
    expect(lines).toContain(`nitride_volume_connections{volume="${volume.id}"} 1`);
  });

  it('serves the same text on the loopback TCP listener, and only GET /metrics there', async () => {
    const status = await host.daemon.client.get<DaemonStatus>('/v1/status');
    expect(status.metrics.tcp).toMatch(/^127\.0\.0\.1:\d+$/);
    const r = await httpGet(`http://${status.metrics.tcp}/metrics`);
    expect(r.status).toBe(200);
    expect(sample(parse(r.text), 'nitride_volume_info', { volume: volume.id })).toBe(1);
    expect((await httpGet(`http://${status.metrics.tcp}/v1/status`)).status).toBe(404);
  });

  it('nitride top shows the write rate of a volume under load, as JSON and as a table', async () => {
    let loading = true;
    const load = (async () => {
      while (loading) await runOk('qemu-io', ['-f', 'raw', volume.uri, '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x12 1M 1M']);
    })();
    try {
      const r = await host.cli(['top', '--json', '--count', '2', '--interval', '0.5']);
      expect(r.code, r.stderr).toBe(0);
      const frames = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as TopFrame);
      expect(frames).toHaveLength(2);
      const rows = frames.map((f) => f.volumes.find((v) => v.volume === volume.id)!);
      expect(Math.max(...rows.map((v) => v.writesPerSecond))).toBeGreaterThan(0);
      expect(Math.max(...rows.map((v) => v.writeBytesPerSecond))).toBeGreaterThanOrEqual(1 << 20);
      const human = await host.cli(['top', '--count', '1', '--interval', '0.3']);
      expect(human.stdout).toMatch(/^VOLUME\s+ATTACHED\s+READ\/S\s+WRITE\/S\s+READ MB\/S\s+WRITE MB\/S\s+ERRORS\/S\s+AT IOPS LIMIT\s+AT TP LIMIT$/m);
      expect(human.stdout).toContain(volume.id);
    } finally {
      loading = false;
      await load;
    }
    const bad = await host.cli(['top', '--interval', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^nitride: .*--interval must be a positive number$/);
  });

  it('refuses a non-loopback metrics address with a one-line usage error', async () => {
    const { dir, cleanup } = tempDir();
    try {
      for (const bad of ['0.0.0.0:9464', '[::]:9464', '192.0.2.1:9464', 'localhost:9464']) {
        const r = await nitride(['daemon', '--state-dir', dir, '--control-socket', `${dir}/c.sock`, '--metrics-listen', bad]);
        expect(r.code, bad).toBe(2);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(/^nitride: --metrics-listen must be/);
      }
    } finally {
      cleanup();
    }
  });
});
