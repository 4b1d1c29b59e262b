/**
 * SIGTERM while an NBD client is attached and idle: the daemon finishes in-flight work,
 * closes the connection itself and exits 0 without waiting for the client to hang up (a
 * client with reconnect-delay hangs up only once it has reconnected: to the next daemon).
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { startHost, type TestHost } from '../helpers/nitride.js';

let host: TestHost;
beforeAll(async () => {
  host = await startHost();
});
afterAll(async () => {
  await host?.stop();
});

describe('daemon stop with attached clients', () => {
  it('exits 0 while a connected client stays idle, and the client sees the connection end', async () => {
    const r = await host.cli(['volume', 'create', '--json', '--size', '8M']);
    const vol = JSON.parse(r.stdout) as VolumeInfo;
    // The client connects, reads once, says so, then waits on the socket for 60 s.
    const script = `
import nbd, sys, time
h = nbd.NBD()
h.connect_uri(${JSON.stringify(vol.uri)})
h.pread(512, 0)
print('connected', flush=True)
start = time.time()
try:
    while time.time() - start < 60:
        h.pread(512, 0)
        time.sleep(0.2)
    print('still connected', flush=True)
except nbd.Error as e:
    print('connection ended', flush=True)
`;
    const client = spawn('/usr/bin/python3', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    client.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const clientExited = new Promise<number | null>((resolve) => client.on('exit', (code) => resolve(code)));
    while (!out.includes('connected')) await new Promise((w) => setTimeout(w, 50));
    expect(await host.daemon.stop('SIGTERM')).toBe(0);
    expect(host.daemon.output()).toContain('"msg":"volume detached (data key destroyed)"');
    await clientExited;
    expect(out).toContain('connection ended');
    expect(out).not.toContain('still connected');
    await host.restartDaemon();
  }, 90_000);
});
