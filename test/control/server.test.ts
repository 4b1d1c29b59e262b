/**
 * The control server's HTTP edge, against a real daemon (another process, as clients see it):
 * a body over the limit is answered with 413 while the client is still sending, and the
 * connection stays open until the body is drained, so the answer reaches the client instead of
 * a reset (EPIPE/ECONNRESET when the server closes on unread data).
 */
import net from 'node:net';
import path from 'node:path';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/control/audit.js';
import { ControlServer } from '../../src/control/server.js';
import { createLogger } from '../../src/log/logger.js';
import { startDaemon, tempDir, type RunningDaemon } from '../helpers/nitride.js';

let daemon: RunningDaemon;
let cleanup: () => void;
beforeAll(async () => {
  const t = tempDir('nitride-control-');
  cleanup = t.cleanup;
  daemon = await startDaemon({ stateDir: path.join(t.dir, 'state'), socket: path.join(t.dir, 'control.sock') });
});
afterAll(async () => {
  await daemon?.stop('SIGKILL');
  cleanup?.();
});

interface Outcome {
  reply: string;
  error?: string;
}

/** PUT `size` bytes in `chunk`-sized writes `gapMs` apart, with `Connection: close` (the server closes after its answer); the client never half-closes. */
function slowPut(size: number, chunk: number, gapMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = net.connect(daemon.socket);
    let reply = '';
    let error: string | undefined;
    s.on('data', (d: Buffer) => (reply += d.toString()));
    s.on('error', (err: NodeJS.ErrnoException) => (error = err.code));
    s.on('close', () => resolve({ reply, ...(error ? { error } : {}) }));
    s.write(`PUT /v1/log-level HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`);
    let sent = 0;
    const next = () => {
      if (s.destroyed) return;
      const n = Math.min(chunk, size - sent);
      s.write(Buffer.alloc(n, 'x'));
      sent += n;
      if (sent < size) setTimeout(next, gapMs);
    };
    next();
  });
}

describe('control server', () => {
  it('answers a too-large body sent in slow pieces with 413, and the client reads it (no reset)', async () => {
    for (let i = 0; i < 8; i++) {
      const { reply, error } = await slowPut(2 << 20, 64 << 10, 1);
      expect(error, reply).toBeUndefined();
      expect(reply).toMatch(/^HTTP\/1.1 413 /);
      expect(JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)).error.code).toBe('BODY_TOO_LARGE');
    }
    expect(daemon.process.exitCode).toBeNull();
  });

  it('200 connections opened at once are all answered (none reset at accept)', async () => {
    const sockets = await Promise.all(Array.from({ length: 200 }, () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(daemon.socket, () => resolve(s));
      s.on('error', reject);
    })));
    const replies = await Promise.all(sockets.map((s) => new Promise<string>((resolve) => {
      let reply = '';
      s.on('data', (d: Buffer) => (reply += d.toString()));
      s.on('error', (err: NodeJS.ErrnoException) => (reply += `<${err.code}>`));
      s.on('close', () => resolve(reply));
      s.write('GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    })));
    expect(replies.filter((r) => !r.startsWith('HTTP/1.1 200 '))).toEqual([]);
  });

  it('calls past the concurrent limit wait for a slot, in order, and are all served', async () => {
    const t = tempDir('nitride-control-slots-');
    const logger = createLogger({ level: 'silent' });
    const server = new ControlServer({ socketPath: path.join(t.dir, 'c.sock'), logger, audit: await AuditLog.open(path.join(t.dir, 'audit.log'), logger) });
    let inside = 0;
    let most = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    server.register({ method: 'GET', path: '/v1/wait', handle: async () => {
      most = Math.max(most, ++inside);
      await gate;
      inside--;
      return { ok: true };
    } });
    await server.listen();
    try {
      const calls = Array.from({ length: 100 }, () => new Promise<number>((resolve, reject) => {
        http.get({ socketPath: path.join(t.dir, 'c.sock'), path: '/v1/wait', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      }));
      while (inside < 64) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      expect(inside).toBe(64);
      open();
      expect(new Set(await Promise.all(calls))).toEqual(new Set([200]));
      expect(most).toBe(64);
    } finally {
      await server.close();
      t.cleanup();
    }
  });
});
