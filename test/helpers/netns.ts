/**
 * nitride "hosts" as network namespaces: a KMS and a daemon started inside each, joined by a
 * veth underlay (10.x addresses that exist only inside the namespaces). Every name starts with
 * the caller's unique prefix; `teardown()` kills what was started and deletes the namespaces
 * (and with them every link in them) even after a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI, nitride, type CliResult } from './nitride.js';
import { run } from './run.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function must(cmd: string, ...args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Poll `check` every 200 ms; errors marked `fatal` end the wait at once. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  const attempt = async () => {
    try {
      return await check();
    } catch (err) {
      if ((err as { fatal?: boolean }).fatal) throw err;
      return false;
    }
  };
  while (!(await attempt())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

export interface NsHost {
  name: string;
  ns: string;
  underlayIp: string;
  dir: string;
  controlSocket: string;
  kmsSocket: string;
  nbdSocket: string;
  daemon: ChildProcess;
  output: string;
  cli(args: string[]): Promise<CliResult>;
  /** `nitride ARGS… --json` that must succeed. */
  json<T>(args: string[]): Promise<T>;
  /** Stop the daemon with SIGTERM (unless it is gone already), run `meanwhile`, start a new one on the same state (KMS untouched). */
  restartDaemon(meanwhile?: () => Promise<void> | void): Promise<void>;
}

export class NsLab {
  readonly namespaces: string[] = [];
  readonly links: string[] = [];
  readonly hosts: NsHost[] = [];
  private readonly procs: ChildProcess[] = [];

  constructor(
    readonly prefix: string,
    private readonly scratch: string,
  ) {}

  async addNamespace(name: string): Promise<string> {
    const ns = this.prefix + name;
    await must('ip', 'netns', 'add', ns);
    this.namespaces.push(ns);
    await must('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    return ns;
  }

  /** Two host namespaces joined by a veth underlay 10.<octet>.0.1 <-> .2. */
  async underlay(a: string, b: string, octet: number, mtu = 1500): Promise<[string, string]> {
    const [la, lb] = [`${this.prefix}ua`, `${this.prefix}ub`];
    await must('ip', 'link', 'add', la, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', lb, 'mtu', String(mtu));
    this.links.push(la);
    const ips: [string, string] = [`10.${octet}.0.1`, `10.${octet}.0.2`];
    for (const [link, ns, ip] of [
      [la, a, ips[0]],
      [lb, b, ips[1]],
    ] as const) {
      await must('ip', 'link', 'set', link, 'netns', ns);
      await must('ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', link);
      await must('ip', '-n', ns, 'link', 'set', link, 'up');
    }
    return ips;
  }

  /**
   * Host namespaces joined by one underlay segment: a bridge in a hub namespace, host i at
   * 10.<octet>.0.<i+1>, the hub itself at 10.<octet>.0.254 (for services every host reaches).
   */
  async bridgedUnderlay(hosts: string[], octet: number): Promise<{ ips: string[]; hub: string; hubIp: string }> {
    const hub = await this.addNamespace('hub');
    const br = `${this.prefix}br`;
    await must('ip', '-n', hub, 'link', 'add', br, 'type', 'bridge');
    await must('ip', '-n', hub, 'link', 'set', br, 'up');
    const hubIp = `10.${octet}.0.254`;
    await must('ip', '-n', hub, 'addr', 'add', `${hubIp}/24`, 'dev', br);
    const ips: string[] = [];
    for (const [i, ns] of hosts.entries()) {
      const [inHost, inHub] = [`${this.prefix}u${i}`, `${this.prefix}p${i}`];
      await must('ip', 'link', 'add', inHost, 'type', 'veth', 'peer', 'name', inHub);
      this.links.push(inHost);
      await must('ip', 'link', 'set', inHost, 'netns', ns);
      await must('ip', 'link', 'set', inHub, 'netns', hub);
      await must('ip', '-n', hub, 'link', 'set', inHub, 'master', br);
      await must('ip', '-n', hub, 'link', 'set', inHub, 'up');
      const ip = `10.${octet}.0.${i + 1}`;
      await must('ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', inHost);
      await must('ip', '-n', ns, 'link', 'set', inHost, 'up');
      ips.push(ip);
    }
    return { ips, hub, hubIp };
  }

  /** A KMS and a daemon (VPC underlay on `underlayIp`) inside namespace `ns`; resolves once the VPC is up. */
  async startHost(name: string, ns: string, underlayIp: string, daemonArgs: string[] = []): Promise<NsHost> {
    const dir = path.join(this.scratch, name);
    const lab = this;
    const host: NsHost = {
      name,
      ns,
      underlayIp,
      dir,
      controlSocket: path.join(dir, 'run', 'control.sock'),
      kmsSocket: path.join(dir, 'run-kms', 'kms.sock'),
      nbdSocket: path.join(dir, 'run', 'nbd.sock'),
      daemon: undefined as unknown as ChildProcess,
      output: '',
      cli: (args) => nitride(args, { NITRIDE_SOCKET: host.controlSocket, NITRIDE_KMS_SOCKET: host.kmsSocket }),
      async json<T>(args: string[]): Promise<T> {
        const r = await host.cli([...args, '--json']);
        if (r.code !== 0) throw new Error(`nitride ${args.join(' ')} on ${name}: ${r.stderr}`);
        return JSON.parse(r.stdout) as T;
      },
      async restartDaemon(meanwhile) {
        const old = host.daemon;
        if (old.exitCode === null && old.signalCode === null) {
          const exited = new Promise((r) => old.once('exit', r));
          old.kill('SIGTERM');
          await exited;
        }
        await meanwhile?.();
        await start();
      },
    };
    this.hosts.push(host);
    const kms = this.spawnIn(host, ['kms', 'serve', '--state-dir', path.join(dir, 'kms'), '--socket', host.kmsSocket]);
    await waitFor(`KMS of ${name}`, () => {
      if (kms.exitCode !== null) throw Object.assign(new Error(`KMS exited with ${kms.exitCode}: ${host.output}`), { fatal: true });
      return existsSync(host.kmsSocket);
    });
    async function start(): Promise<void> {
      host.daemon = lab.spawnIn(host, [
        'daemon',
        '--state-dir', path.join(dir, 'state'),
        '--control-socket', host.controlSocket,
        '--kms-socket', host.kmsSocket,
        '--vpc-listen', `${underlayIp}:4789`,
        ...daemonArgs,
      ]);
      await waitFor(`VPC of ${name}`, async () => (await host.json<{ vpc: { state: string } }>(['status'])).vpc.state === 'up').catch((err: Error) => {
        throw new Error(`${err.message}: ${host.output.slice(-3000)}`);
      });
    }
    await start();
    return host;
  }

  /** Move the guest end of a veth ENI into a new guest namespace and run DHCP there. */
  async dhcpGuest(host: NsHost, name: string, eni: { guestInterface: string | null }): Promise<{ ns: string; ifname: string; lease: Record<string, string> }> {
    const ns = await this.addNamespace(name);
    const ifname = eni.guestInterface!;
    await must('ip', '-n', host.ns, 'link', 'set', ifname, 'netns', ns);
    await must('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1');
    await must('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1');
    await must('ip', '-n', ns, 'link', 'set', ifname, 'up');
    const leaseFile = path.join(this.scratch, `lease-${name}`);
    const script = path.join(this.scratch, `udhcpc-${name}.sh`);
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        'case "$1" in',
        '  bound|renew)',
        '    ip addr flush dev "$interface"',
        '    ip addr add "$ip/${mask:-24}" dev "$interface"',
        '    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"',
        '    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"',
        `    env > ${leaseFile}`,
        '    ;;',
        'esac',
        'exit 0',
        '',
      ].join('\n'),
    );
    chmodSync(script, 0o755);
    await must('ip', 'netns', 'exec', ns, 'busybox', 'udhcpc', '-i', ifname, '-n', '-q', '-f', '-t', '5', '-T', '2', '-s', script);
    const lease = Object.fromEntries(
      readFileSync(leaseFile, 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    return { ns, ifname, lease };
  }

  /** Every host peers with every other one (pinned public keys). */
  async peerAll(): Promise<void> {
    const keys = new Map<NsHost, string>();
    for (const h of this.hosts) keys.set(h, (await h.json<{ publicKey: string }>(['key', 'show'])).publicKey);
    for (const h of this.hosts) {
      for (const other of this.hosts) {
        if (other !== h) await h.json(['peer', 'add', '--name', other.name, '--endpoint', `${other.underlayIp}:4789`, '--public-key', keys.get(other)!]);
      }
    }
  }

  spawnIn(host: NsHost, args: string[]): ChildProcess {
    // nsenter --net, not `ip netns exec`: that also mounts a fresh /sys, without the cgroup
    // hierarchies the daemon puts guests' QEMUs in.
    const child = spawn('nsenter', [`--net=/run/netns/${host.ns}`, '--', process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (host.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (host.output += d.toString()));
    this.procs.push(child);
    return child;
  }

  async teardown(): Promise<void> {
    const live = () => this.procs.filter((p) => p.exitCode === null && p.signalCode === null);
    for (const p of live()) p.kill('SIGTERM');
    await sleep(500);
    for (const p of live()) p.kill('SIGKILL');
    for (const ns of this.namespaces) await run('ip', ['netns', 'del', ns]);
    for (const link of this.links) await run('ip', ['link', 'del', link]);
  }
}
