/**
 * The security paradigm, checked on a real daemon under load with `ss -p`: it listens only
 * where configured (control and NBD Unix sockets, the configured NBD and metrics TCP ports,
 * the VPC underlay UDP port) — no TCP control port — and every connection it opens itself
 * goes to the KMS socket; its UDP socket is unconnected and bound to the configured underlay
 * address (it sends only to configured peers, see the VPC tests).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/api/daemon.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { startHost, type TestHost } from '../helpers/nitride.js';
import { run } from '../helpers/run.js';

interface SsSocket {
  netid: string;
  state: string;
  local: string;
  peer: string;
  /** Unix sockets: this socket's inode and its peer's (0 = none). */
  inode?: string;
  peerInode?: string;
  pids: number[];
  /** File descriptor numbers in the owning processes. */
  fds: number[];
}

/** Every socket `ss` lists (-a: listening and connected; tcp, udp, unix, raw, packet). */
async function sockets(): Promise<SsSocket[]> {
  const r = await run('ss', ['-H', '-a', '-n', '-p', '-t', '-u', '-x', '-w', '-0']);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((line) => {
      const t = line.trim().split(/\s+/);
      const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
      const fds = [...line.matchAll(/fd=(\d+)/g)].map((m) => Number(m[1]));
      // Unix sockets print "path inode" and "peer-path peer-inode".
      if (t[0]!.startsWith('u_')) return { netid: t[0]!, state: t[1]!, local: t[4]!, inode: t[5]!, peer: t[6]!, peerInode: t[7]!, pids, fds };
      return { netid: t[0]!, state: t[1]!, local: t[4]!, peer: t[5]!, pids, fds };
    });
}

let host: TestHost;
let volume: VolumeInfo;
beforeAll(async () => {
  host = await startHost({ daemonArgs: ['--nbd-listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0'] });
  const r = await host.cli(['volume', 'create', '--json', '--size', '32M']);
  expect(r.code, r.stderr).toBe(0);
  volume = JSON.parse(r.stdout) as VolumeInfo;
});
afterAll(async () => {
  await host?.stop();
});

describe('the daemon sockets under load (ss -p)', () => {
  it('listens only where configured, and connects out only to the KMS', async () => {
    const pid = host.daemon.process.pid!;
    const kmsPid = host.kms.process.pid!;
    const status = await host.daemon.client.get<DaemonStatus>('/v1/status');
    const nbdTcp = status.nbd.tcp!;
    const metricsTcp = status.metrics.tcp!;

    // Load: fio-like I/O through qemu-io on the Unix and TCP listeners, and volume creation
    // and attachment (KMS GenerateDataKeyWithoutPlaintext and Decrypt), while ss samples.
    let loading = true;
    const io = (async () => {
      for (let i = 0; loading; i++) {
        const uri = i % 2 ? volume.uri : volume.tcpUri!;
        await run('qemu-io', ['-f', 'raw', uri, '-c', `write -P ${i % 256} 0 1M`, '-c', 'read 0 1M']);
      }
    })();
    const kmsCalls = (async () => {
      for (let i = 0; loading && i < 20; i++) {
        const c = await host.cli(['volume', 'create', '--json', '--size', '1M']);
        const v = JSON.parse(c.stdout) as VolumeInfo;
        await run('qemu-io', ['-f', 'raw', v.uri, '-c', 'read 0 4k']);
      }
    })();
    const seen: SsSocket[] = [];
    const all: SsSocket[] = [];
    for (let i = 0; i < 25; i++) {
      const snapshot = await sockets();
      all.push(...snapshot);
      seen.push(...snapshot.filter((s) => s.pids.includes(pid)));
      await new Promise((r) => setTimeout(r, 100));
    }
    loading = false;
    await Promise.all([io, kmsCalls]);

    // TCP: listening exactly on the configured NBD and metrics ports; every connection accepted on them.
    const tcp = seen.filter((s) => s.netid === 'tcp');
    const tcpListen = new Set(tcp.filter((s) => s.state === 'LISTEN').map((s) => s.local));
    expect([...tcpListen].sort()).toEqual([nbdTcp, metricsTcp].sort());
    const tcpOther = tcp.filter((s) => s.state !== 'LISTEN' && !tcpListen.has(s.local));
    expect(tcpOther, 'outbound TCP').toEqual([]);
    expect(tcp.filter((s) => s.state === 'ESTAB').length, 'the TCP load was seen').toBeGreaterThan(0);

    // UDP: the VPC underlay only, bound to the configured loopback address, not connected to anyone.
    const udp = seen.filter((s) => s.netid === 'udp');
    expect(new Set(udp.map((s) => `${s.local} ${s.peer}`)).size).toBe(1);
    expect(udp[0]!.local).toMatch(new RegExp(`^127\\.0\\.0\\.1:${status.vpc.port}$`));
    expect(udp[0]!.peer).toBe('0.0.0.0:*');

    // Unix: listening on the control and NBD sockets; connections accepted there (named
    // after them); the daemon's own unnamed client sockets must all lead to the KMS's socket
    // (or to another socket of the daemon itself: a socketpair). Its stdio (fds 0-2) are
    // socketpairs to the test here and the journal's stream under systemd: not connections it opened.
    const unix = seen.filter((s) => s.netid.startsWith('u_'));
    const unixListen = new Set(unix.filter((s) => s.state === 'LISTEN').map((s) => s.local));
    expect([...unixListen].sort()).toEqual([host.daemon.socket, host.nbdSocket].sort());
    for (const s of unix.filter((x) => x.state !== 'LISTEN' && x.local !== '*')) expect(unixListen, `accepted on ${s.local}`).toContain(s.local);
    const ownInodes = new Set(unix.map((s) => s.inode));
    const kmsEnds = new Set(all.filter((s) => s.pids.includes(kmsPid) && s.local === host.kms.socket).map((s) => s.inode));
    const outbound = unix.filter((s) => s.local === '*' && s.peerInode !== '0' && !ownInodes.has(s.peerInode) && !s.fds.every((fd) => fd <= 2));
    expect(outbound.length, 'the KMS calls were seen').toBeGreaterThan(0);
    for (const s of outbound) expect(kmsEnds.has(s.peerInode), `daemon socket ${s.inode} is connected to ${s.peerInode}, not to the KMS`).toBe(true);

    // Packet sockets only for local ENIs (none here); no raw sockets.
    expect(seen.filter((s) => s.netid === 'p_raw' || s.netid === 'p_dgr' || s.netid === 'raw')).toEqual([]);
  }, 120_000);
});
