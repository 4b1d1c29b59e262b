import { existsSync, promises as fs, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nitride, startDaemon, tempDir, type RunningDaemon } from '../helpers/nitride.js';

let daemons: RunningDaemon[] = [];
let cleanups: Array<() => void> = [];
afterEach(async () => {
  for (const d of daemons) await d.stop('SIGKILL');
  daemons = [];
  cleanups.forEach((c) => c());
  cleanups = [];
});
async function fresh(args: string[] = []): Promise<RunningDaemon> {
  const t = tempDir();
  cleanups.push(t.cleanup);
  const d = await startDaemon({ stateDir: path.join(t.dir, 'state'), socket: path.join(t.dir, 'run', 'control.sock'), args });
  daemons.push(d);
  return d;
}

describe('daemon lifecycle', () => {
  it('answers status --json, and stops cleanly on SIGTERM (exit 0, socket and lock removed)', async () => {
    const d = await fresh();
    const r = await nitride(['status', '--json', '--control-socket', d.socket]);
    expect(r.code).toBe(0);
    const status = JSON.parse(r.stdout);
    // No KMS here: the VPC cannot unwrap its host key, so the daemon says it is degraded and why.
    expect(status).toMatchObject({ pid: d.process.pid, stateDir: d.stateDir, controlSocket: d.socket, health: 'degraded' });
    expect(status.problems).toEqual([expect.stringMatching(/^VPC down: .*KMS/)]);
    expect(typeof status.version).toBe('string');

    // Not under systemd: no fd store, so ephemeral volumes do not survive a restart, and it says so.
    expect(status.volumes.ephemeralHandover).toEqual({ via: 'none', kept: 0 });

    const human = await nitride(['status', '--control-socket', d.socket]);
    expect(human.stdout).toMatch(/^health:\s+degraded \(VPC down: .*KMS.*\)$/m);
    expect(human.stdout).toMatch(/^ephemeral handover:\s+none \(no systemd fd store\): ephemeral volumes are wiped when the daemon stops or crashes$/m);

    expect(statSync(d.socket).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(d.socket)).mode & 0o777).toBe(0o700);
    expect(await d.stop('SIGTERM')).toBe(0);
    expect(existsSync(d.socket)).toBe(false);
    expect(existsSync(path.join(d.stateDir, 'daemon.pid'))).toBe(false);
    expect(d.output()).toContain('"msg":"daemon stopped"');
  });

  it('--ephemeral-handover-file (opt-in) shows in status', async () => {
    const d = await fresh(['--ephemeral-handover-file']);
    const status = JSON.parse((await nitride(['status', '--json', '--control-socket', d.socket])).stdout);
    expect(status.volumes.ephemeralHandover).toEqual({ via: 'metadata-file', kept: 0 });
  });

  it('SIGINT stops it too', async () => {
    const d = await fresh();
    expect(await d.stop('SIGINT')).toBe(0);
  });

  it('writes an audit line for a mutating call, with the caller uid and no body', async () => {
    const d = await fresh();
    const r = await nitride(['log-level', 'debug', '--control-socket', d.socket]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('log level info -> debug');
    const lines = (await fs.readFile(path.join(d.stateDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ action: 'daemon.set-log-level', status: 200, result: 'ok', caller: { uid: process.getuid!() } });
    expect(lines[0].caller.pid).toBeGreaterThan(0);
    expect(statSync(path.join(d.stateDir, 'audit.log')).mode & 0o777).toBe(0o600);
    const status = JSON.parse((await nitride(['status', '--json', '--control-socket', d.socket])).stdout);
    expect(status.logLevel).toBe('debug');
    // a rejected mutating call is audited too
    await d.client.call('PUT', '/v1/log-level', { level: 'loud' }).catch(() => {});
    const after = (await fs.readFile(path.join(d.stateDir, 'audit.log'), 'utf8')).trim().split('\n');
    expect(JSON.parse(after[1]!)).toMatchObject({ action: 'daemon.set-log-level', status: 400, result: 'error', error: 'USAGE' });
  });

  it('refuses a second daemon on the same socket, naming the running pid', async () => {
    const d = await fresh();
    const t = tempDir();
    cleanups.push(t.cleanup);
    const r = await nitride(['daemon', '--state-dir', t.dir, '--control-socket', d.socket]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`nitride: control socket ${d.socket} is in use by another process (pid ${d.process.pid})`);
    // the first one is unharmed
    expect((await nitride(['status', '--control-socket', d.socket])).code).toBe(0);
  });

  it('refuses a second daemon on the same state dir', async () => {
    const d = await fresh();
    const r = await nitride(['daemon', '--state-dir', d.stateDir, '--control-socket', d.socket + '.2']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`nitride: another nitride daemon (pid ${d.process.pid}) is using state directory ${d.stateDir}`);
  });

  it('replaces a stale socket after kill -9, but never a regular file', async () => {
    const d = await fresh();
    await d.stop('SIGKILL');
    expect(existsSync(d.socket)).toBe(true);
    const again = await startDaemon({ stateDir: d.stateDir, socket: d.socket });
    daemons.push(again);
    expect(await again.stop()).toBe(0);

    writeFileSync(d.socket, 'precious');
    const r = await nitride(['daemon', '--state-dir', d.stateDir, '--control-socket', d.socket]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/exists and is not a socket; refusing to replace it/);
    expect(await fs.readFile(d.socket, 'utf8')).toBe('precious');
  });
});

describe('control API input', () => {
  async function raw(socket: string, request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = net.connect(socket);
      let out = '';
      s.on('data', (d) => (out += d.toString()));
      s.on('end', () => resolve(out));
      s.on('close', () => resolve(out));
      s.on('error', reject);
      s.write(request);
      setTimeout(() => s.end(), 300);
    });
  }

  it('rejects bad JSON, unknown fields, bad values, bad paths and methods with clear 4xx; keeps serving', async () => {
    const d = await fresh();
    const call = (method: string, p: string, body?: string) =>
      raw(d.socket, `${method} ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body ?? '')}\r\n\r\n${body ?? ''}`);
    const cases: Array<[string, string, string | undefined, number, RegExp]> = [
      ['PUT', '/v1/log-level', '{"level":', 400, /request body is not valid JSON/],
      ['PUT', '/v1/log-level', '{"level":"info","extra":1}', 400, /unknown field\(s\) 'extra'/],
      ['PUT', '/v1/log-level', '{"level":"loud"}', 400, /level: /],
      ['PUT', '/v1/log-level', '[1,2]', 400, /invalid request body/],
      ['GET', '/v1/status?verbose=1', undefined, 400, /invalid query: unknown field\(s\) 'verbose'/],
      ['GET', '/v1/status', '{"a":1}', 400, /takes no request body/],
      ['GET', '/v1/nope', undefined, 404, /no such API path/],
      ['DELETE', '/v1/status', undefined, 405, /method DELETE not allowed/],
    ];
    for (const [method, p, body, status, message] of cases) {
      const reply = await call(method, p, body);
      expect(reply, `${method} ${p} ${body}`).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
      const json = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4));
      expect(json.error.message).toMatch(message);
      expect(typeof json.error.code).toBe('string');
    }
    const big = await call('PUT', '/v1/log-level', '{"level":"' + 'x'.repeat(2 << 20) + '"}');
    expect(big).toMatch(/^HTTP\/1.1 413 /);
    const garbage = await raw(d.socket, '\x00\x01garbage\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1.1 400 /);
    expect((await nitride(['status', '--control-socket', d.socket])).code).toBe(0);
    expect(d.process.exitCode).toBeNull();
  });
});
