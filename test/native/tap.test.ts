import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, accessSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { closeFd, tapOpen, tapSetPersist } from '../../src/native/addon.js';

function canUseTun(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

interface LinkInfo {
  ifname: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

/** `ip -d -j link show NAME`, or undefined when the device does not exist. */
function link(name: string): LinkInfo | undefined {
  try {
    const out = execFileSync('ip', ['-d', '-j', 'link', 'show', 'dev', name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return (JSON.parse(out) as LinkInfo[])[0];
  } catch {
    return undefined;
  }
}

/** "nttest" + 8 hex digits: 14 bytes, under IFNAMSIZ-1 = 15. */
function uniqueName(prefix = 'nttest'): string {
  return prefix + randomBytes(4).toString('hex');
}

describe.skipIf(!canUseTun())('tapOpen (root, /dev/net/tun)', () => {
  const fds = new Set<number>();
  const names = new Set<string>();

  function open(name: string, opts?: Parameters<typeof tapOpen>[1]) {
    const tap = tapOpen(name, opts);
    fds.add(tap.fd);
    names.add(tap.name);
    return tap;
  }
  function close(fd: number): void {
    fds.delete(fd);
    closeFd(fd);
  }

  afterEach(() => {
    for (const fd of fds) {
      try {
        closeFd(fd);
      } catch {
        // already closed
      }
    }
    fds.clear();
    for (const name of names) {
      if (link(name)) {
        try {
          execFileSync('ip', ['link', 'del', 'dev', name], { stdio: 'ignore' });
        } catch {
          // best effort
        }
      }
    }
    names.clear();
  });

  it('creates, persists, reopens and removes a TAP device', () => {
    const name = uniqueName();
    const tap = open(name);
    expect(tap.name).toBe(name);
    expect(Number.isInteger(tap.fd) && tap.fd > 2).toBe(true);
    const info = link(name);
    expect(info?.linkinfo?.info_kind).toBe('tun');
    expect(info?.linkinfo?.info_data?.type).toBe('tap');
    expect(info?.linkinfo?.info_data?.pi).toBe(false);
    expect(info?.linkinfo?.info_data?.persist).toBe(false);

    tapSetPersist(tap.fd, true);
    expect(link(name)?.linkinfo?.info_data?.persist).toBe(true);
    close(tap.fd);
    expect(link(name)).toBeDefined(); // persistent: survives its last fd

    const again = open(name);
    expect(again.name).toBe(name);
    tapSetPersist(again.fd, false);
    expect(link(name)).toBeDefined(); // still attached
    close(again.fd);
    expect(link(name)).toBeUndefined();
  });

  it('a non-persistent TAP disappears when its fd closes', () => {
    const tap = open(uniqueName());
    expect(link(tap.name)).toBeDefined();
    close(tap.fd);
    expect(link(tap.name)).toBeUndefined();
  });

  it('applies persist/owner/group given as options', () => {
    const name = uniqueName();
    const tap = open(name, { persist: true, owner: 65534, group: 65534 });
    const data = link(name)?.linkinfo?.info_data;
    expect(data?.persist).toBe(true);
    expect(data?.user).toBeDefined();
    expect(data?.group).toBeDefined();
    close(tap.fd);
    expect(link(name)).toBeDefined();
    const again = open(name, { persist: false });
    close(again.fd);
    expect(link(name)).toBeUndefined();
  });

  it('lets the kernel choose the name from a %d pattern', () => {
    const prefix = 'ntt' + randomBytes(3).toString('hex');
    const tap = open(`${prefix}%d`);
    expect(tap.name).toMatch(new RegExp(`^${prefix}\\d+$`));
    expect(link(tap.name)).toBeDefined();
  });

  it('opens with vnetHdr and multiQueue, and attaches a second queue', () => {
    const name = uniqueName();
    const q0 = open(name, { vnetHdr: true, multiQueue: true });
    const q1 = open(name, { vnetHdr: true, multiQueue: true });
    expect(q1.name).toBe(name);
    expect(q1.fd).not.toBe(q0.fd);
    const data = link(name)?.linkinfo?.info_data;
    expect(data?.vnet_hdr).toBe(true);
    expect(data?.multi_queue).toBe(true);
    expect(data?.numqueues).toBe(2);
  });

  it('reports EBUSY with step and strerror for a second single-queue open', () => {
    const name = uniqueName();
    open(name);
    let err: (Error & { code?: string }) | undefined;
    try {
      open(name);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err).toBeInstanceOf(Error);
    expect(err?.message).toBe(`TUNSETIFF ${name}: Device or resource busy`);
    expect(err?.code).toBe('EBUSY');
  });

  it('rejects a name longer than 15 bytes without touching the kernel', () => {
    const name = 'nttest' + randomBytes(8).toString('hex'); // 22 bytes
    expect(() => tapOpen(name)).toThrow(/interface name "nttest[0-9a-f]+" is 22 bytes long; Linux allows at most 15/);
    expect(link(name.slice(0, 15))).toBeUndefined();
  });

  it('closeFd throws EBADF on a closed fd', () => {
    const tap = open(uniqueName());
    close(tap.fd);
    expect(() => closeFd(tap.fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('validates argument types', () => {
    expect(() => tapOpen(42 as unknown as string)).toThrow(TypeError);
    expect(() => tapOpen('x', { persist: 'yes' as unknown as boolean })).toThrow(/option 'persist' must be a boolean/);
    expect(() => tapSetPersist(-1, true)).toThrow(RangeError);
  });
});
