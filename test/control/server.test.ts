/**
 * The control server's HTTP edge, against a real daemon (another process, as clients see it):
 * a body over the limit is answered with 413 while the client is still sending, and the
 * connection stays open until the body is drained, so the answer reaches the client instead of
 * a reset (EPIPE/ECONNRESET when the server closes on unread data).
 */
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
});
