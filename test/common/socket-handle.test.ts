/**
 * The Node internals src/common/socket-handle.ts relies on still behave as it expects: a Node
 * upgrade that changes them fails here, instead of nitride silently falling back (no peer
 * credentials, no fd store, no native NBD lane, no supplied read buffers).
 */
import { readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { socketFd, withSuppliedReadBuffers } from '../../src/common/socket-handle.js';
import { tempDir } from '../helpers/nitride.js';

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function listening(server: net.Server, where: string | net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => resolve());
  });
}

/** What the descriptor is, as the kernel says (`socket:[inode]` for a socket). */
const fdTarget = (fd: number | undefined) => (fd === undefined ? 'none' : readlinkSync(`/proc/self/fd/${fd}`));

describe('socketFd', () => {
  it('gives the descriptor of a Unix listener, both ends of a connection and a TCP listener; none once closed', async () => {
    const { dir, cleanup } = tempDir('nitride-handle-');
    cleanups.push(cleanup);
    const server = net.createServer();
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    await listening(server, path.join(dir, 's.sock'));
    const client = net.connect(path.join(dir, 's.sock'));
    await new Promise((r) => client.once('connect', r));
    const peer = await accepted;
    const tcp = net.createServer();
    await listening(tcp, { host: '127.0.0.1', port: 0 });
    const fds = [socketFd(server), socketFd(client), socketFd(peer), socketFd(tcp)];
    for (const fd of fds) expect(fdTarget(fd)).toMatch(/^socket:\[\d+\]$/);
    expect(new Set(fds).size).toBe(4);
    client.destroy();
    peer.destroy();
    await new Promise((r) => server.close(r));
    await new Promise((r) => tcp.close(r));
    expect([socketFd(server), socketFd(client), socketFd(peer), socketFd(tcp)]).toEqual([undefined, undefined, undefined, undefined]);
  });
});

describe('withSuppliedReadBuffers', () => {
  it('moves an accepted connection into a socket that reads into the supplied buffer, still counted by the server', async () => {
    const { dir, cleanup } = tempDir('nitride-handle-');
    cleanups.push(cleanup);
    const supplied = Buffer.alloc(1024);
    const reads: Array<{ n: number; same: boolean }> = [];
    let gotRead: () => void;
    const read = new Promise<void>((r) => (gotRead = r));
    const server = net.createServer({ pauseOnConnect: true });
    const moved = new Promise<{ old: net.Socket; oldFd: number | undefined; fresh: net.Socket | null }>((resolve) => {
      server.once('connection', (old: net.Socket) => {
        const oldFd = socketFd(old);
        const fresh = withSuppliedReadBuffers(server, old, {
          buffer: () => supplied,
          callback: (n, buf) => {
            reads.push({ n, same: buf === supplied });
            gotRead();
          },
        });
        resolve({ old, oldFd, fresh });
      });
    });
    await listening(server, path.join(dir, 's.sock'));
    const client = net.connect(path.join(dir, 's.sock'));
    const { old, oldFd, fresh } = await moved;
    expect(fresh).not.toBeNull();
    expect(oldFd).toBeTypeOf('number');
    expect(socketFd(fresh!)).toBe(oldFd);
    expect(socketFd(old)).toBeUndefined();
    client.write('hello');
    await read;
    expect(reads[0]).toEqual({ n: 5, same: true });
    expect(supplied.subarray(0, 5).toString()).toBe('hello');
    // server.close() completes only once the moved connection is gone.
    let closed = false;
    const serverClosed = new Promise<void>((r) => server.close(() => ((closed = true), r())));
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).toBe(false);
    fresh!.destroy();
    client.destroy();
    await serverClosed;
  });
});
