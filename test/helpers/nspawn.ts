/**
 * A real systemd to run nitride's units under: systemd-nspawn --boot of the cached Debian
 * tree (scripts/lib/systemd-tree.sh), with this checkout and node bound in read-only, a
 * private network, /dev/net/tun, and a private cgroup. Recipe and the host workarounds it
 * needs: shared/reference/systemd-test.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './nitride.js';
import { run, runOk, type RunResult } from './run.js';

export const canBootSystemd =
  process.getuid?.() === 0 && existsSync('/usr/bin/systemd-nspawn') && existsSync('/usr/sbin/debootstrap') && existsSync('/dev/net/tun');

export interface BootedSystemd {
  name: string;
  /** PID (host view) of the container's systemd. */
  pid: number;
  /** Run a command inside the container (all namespaces). */
  exec(args: string[], options?: { timeoutMs?: number }): Promise<RunResult>;
  /** Like exec, but rejects unless it exits 0. */
  execOk(args: string[]): Promise<string>;
  /** A path inside the container, as the host sees it (for sockets: qemu-io on the host). */
  hostPath(inside: string): string;
  /** Power off and clean up. */
  shutdown(): Promise<void>;
  output(): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The tree (built and cached on first use; ~50 s on a fresh machine). */
export async function systemdTree(): Promise<string> {
  return (await runOk(path.join(ROOT, 'scripts/lib/systemd-tree.sh'), [], { timeoutMs: 600_000 })).trim();
}

/**
 * Boot systemd with `units` (host file → name in /etc/systemd/system) bound in. The checkout
 * and node appear at their host paths, so units rendered by `nitride install-units` run as
 * they are.
 */
export async function bootSystemd(units: Record<string, string>): Promise<BootedSystemd> {
  const tree = await systemdTree();
  const name = 'ntsd' + randomBytes(4).toString('hex');
  const cgroups = ['systemd', 'unified'].map((h) => `/sys/fs/cgroup/${h}/${name}`).filter((p) => existsSync(path.dirname(p)));
  for (const cg of cgroups) mkdirSync(cg);
  const binds = [
    '--bind=/dev/net/tun',
    `--bind-ro=${ROOT}`,
    `--bind-ro=${process.execPath}`,
    ...Object.entries(units).map(([file, unit]) => `--bind-ro=${file}:/etc/systemd/system/${unit}`),
  ];
  const nspawn = ['systemd-nspawn', '--boot', '--register=no', '--keep-unit', `--machine=${name}`, '-D', tree, '--volatile=overlay', '--system-call-filter=bpf', '--private-network', ...binds];
  // Our own cgroup first (nspawn would otherwise leave payload/supervisor at the top level).
  const script = `${cgroups.map((cg) => `echo $$ > ${cg}/cgroup.procs`).join('; ')}; exec ${nspawn.map((a) => `'${a}'`).join(' ')}`;
  const child: ChildProcess = spawn('bash', ['-c', script], { env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const cleanupCgroups = () => {
    for (const cg of cgroups.reverse()) {
      try {
        rmdirSync(cg);
      } catch {
        // Still populated (a stuck process): left for the next boot's name to differ.
      }
    }
  };

  let pid = 0;
  const deadline = Date.now() + 60_000;
  try {
    while (!pid) {
      if (child.exitCode !== null) throw new Error(`systemd-nspawn exited ${child.exitCode}: ${out}`);
      if (Date.now() > deadline) throw new Error(`the container did not start: ${out}`);
      // nspawn's child is the container's PID 1 (systemd).
      const ps = await run('ps', ['--ppid', String(child.pid), '-o', 'pid=,comm=']);
      const line = ps.stdout.split('\n').find((l) => /systemd/.test(l));
      if (line) pid = Number(line.trim().split(/\s+/)[0]);
      else await sleep(100);
    }
    while (!existsSync(`/proc/${pid}/root/run/systemd/private`)) {
      if (Date.now() > deadline) throw new Error(`systemd did not come up: ${out}`);
      await sleep(100);
    }
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    cleanupCgroups();
    throw err;
  }

  const exec = (args: string[], options: { timeoutMs?: number } = {}) => run('nsenter', ['-t', String(pid), '-a', '--', ...args], { timeoutMs: options.timeoutMs ?? 60_000 });
  const booted: BootedSystemd = {
    name,
    pid,
    exec,
    async execOk(args) {
      const r = await exec(args);
      if (r.code !== 0) throw new Error(`${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
      return r.stdout;
    },
    hostPath: (inside) => `/proc/${pid}/root${inside}`,
    async shutdown() {
      if (child.exitCode === null) {
        // SIGRTMIN+4 asks systemd for a clean poweroff.
        await run('kill', ['-s', 'SIGRTMIN+4', String(pid)]);
        await Promise.race([exited, sleep(20_000)]);
        if (child.exitCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      cleanupCgroups();
    },
    output: () => out,
  };
  await booted.exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: 60_000 });
  return booted;
}
