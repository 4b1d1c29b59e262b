import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peerCredentials, sdNotify } from '../../src/native/addon.js';

/** The OS fd behind a net.Socket / net.Server (libuv internals). */
function fdOf(handleOwner: net.Socket | net.Server): number {
  const fd = (handleOwner as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no fd on handle');
  return fd;
}

describe('peerCredentials (SO_PEERCRED)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nitride-peercred-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('returns this process as the peer of a same-process connection', async () => {
    const path = join(dir, 'api.sock');
    const server = net.createServer();
    server.listen(path);
    await once(server, 'listening');
    try {
      const accepted = once(server, 'connection') as Promise<[net.Socket]>;
      const client = net.connect(path);
      await once(client, 'connect');
      const [conn] = await accepted;
      try {
        const cred = peerCredentials(fdOf(conn));
        expect(cred).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
        // And the other way round: the client's peer is the listener, us too.
        expect(peerCredentials(fdOf(client)).pid).toBe(process.pid);
      } finally {
        client.destroy();
        conn.destroy();
      }
    } finally {
      server.close();
    }
  });

  it('throws ENOTSOCK on a non-socket fd and EBADF on a closed one', () => {
    const fd = openSync(join(dir, 'plain'), 'w');
    try {
      expect(() => peerCredentials(fd)).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
    } finally {
      closeSync(fd);
    }
    expect(() => peerCredentials(fd)).toThrow(/^getsockopt SO_PEERCRED fd \d+: Bad file descriptor$/);
  });
});

// sdNotify lives next to peerCredentials as the other Unix-socket helper.
// node has no AF_UNIX datagram sockets, so the receiver is a python3 child.
const PY_RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
name = sys.argv[1]
s.bind(('\\0' + name[1:]) if name.startswith('@') else name)
print('ready', flush=True)
s.settimeout(4)
data = s.recv(4096)
sys.stdout.write(data.decode())
sys.stdout.flush()
`;

async function receiveOne(address: string, send: () => boolean): Promise<{ sent: boolean; got: string }> {
  const child = spawn('python3', ['-c', PY_RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  const ready = new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (out.startsWith('ready\n')) resolve();
    });
  });
  await ready;
  const saved = process.env.NOTIFY_SOCKET;
  process.env.NOTIFY_SOCKET = address;
  let sent: boolean;
  try {
    sent = send();
  } finally {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  }
  await once(child, 'exit');
  return { sent, got: out.slice('ready\n'.length) };
}

const havePython = spawnSync('python3', ['-c', 'pass']).status === 0;

describe('sdNotify', () => {
  it('returns false when NOTIFY_SOCKET is unset', () => {
    const saved = process.env.NOTIFY_SOCKET;
    delete process.env.NOTIFY_SOCKET;
    try {
      expect(sdNotify('READY=1')).toBe(false);
    } finally {
      if (saved !== undefined) process.env.NOTIFY_SOCKET = saved;
    }
  });

  it.skipIf(!havePython)('sends one datagram to a filesystem socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nitride-notify-'));
    try {
      const r = await receiveOne(join(dir, 'notify'), () => sdNotify('READY=1\nSTATUS=up'));
      expect(r).toEqual({ sent: true, got: 'READY=1\nSTATUS=up' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!havePython)('sends one datagram to an abstract socket (@name)', async () => {
    const name = `@nitride-test-${process.pid}-${Date.now()}`;
    const r = await receiveOne(name, () => sdNotify('STOPPING=1'));
    expect(r).toEqual({ sent: true, got: 'STOPPING=1' });
  });

  it('throws with an errno code when nobody listens', () => {
    const saved = process.env.NOTIFY_SOCKET;
    process.env.NOTIFY_SOCKET = join(tmpdir(), `nitride-no-such-socket-${process.pid}`);
    try {
      expect(() => sdNotify('READY=1')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    } finally {
      if (saved === undefined) delete process.env.NOTIFY_SOCKET;
      else process.env.NOTIFY_SOCKET = saved;
    }
  });
});
