// A real systemd to run nitride's units under, for tests and benchmarks: systemd-nspawn --boot
// of the cached Debian tree (scripts/lib/systemd-tree.sh), this checkout and node bound in
// read-only at their host paths (so units from `nitride install-units` run as they are), a
// private network, /dev/net/tun, and a private cgroup. The recipe and the workarounds this host
// needs are in shared/reference/systemd-test.md.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT, run, sleep } from './bench-common.mjs';

export const canBootSystemd =
  process.getuid?.() === 0 && existsSync('/usr/bin/systemd-nspawn') && existsSync('/usr/sbin/debootstrap') && existsSync('/dev/net/tun');

/** The tree, with extra Debian `packages` (built and cached on first use; ~45 s on a fresh machine, minutes with QEMU). */
export async function systemdTree(packages = []) {
  return (await run(path.join(ROOT, 'scripts/lib/systemd-tree.sh'), packages, { timeoutMs: 900_000 })).stdout.trim();
}

/** Remove a cgroup and the ones nspawn made below it (payload, supervisor, ...), deepest first. */
function removeCgroup(dir) {
  let entries = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) removeCgroup(path.join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    // Still populated (a stuck process): the next boot has another name.
  }
}

/** Where the booted system sees this checkout for its units (`nitride install-units --root`). */
export const UNIT_ROOT = '/opt/nitride';

/**
 * Boot systemd with `units` (host file → name in /etc/systemd/system) bound in; `options.packages`
 * picks a tree with those packages too, `options.bindRo` host directories seen at the same path.
 */
export async function bootSystemd(units, options = {}) {
  const tree = await systemdTree(options.packages ?? []);
  const name = 'ntsd' + randomBytes(4).toString('hex');
  const cgroups = ['systemd', 'unified'].map((h) => `/sys/fs/cgroup/${h}/${name}`).filter((p) => existsSync(path.dirname(p)));
  for (const cg of cgroups) mkdirSync(cg);
  const binds = [
    '--bind=/dev/net/tun',
    `--bind-ro=${ROOT}`,
    // Where the units look for it (install-units --root /opt/nitride): the checkout itself may be
    // under /tmp or /home, which the units' PrivateTmp=/ProtectHome= hide.
    ...(ROOT === UNIT_ROOT ? [] : [`--bind-ro=${ROOT}:${UNIT_ROOT}`]),
    `--bind-ro=${process.execPath}`,
    ...(options.bindRo ?? []).map((d) => `--bind-ro=${d}`),
    ...Object.entries(units).map(([file, unit]) => `--bind-ro=${file}:/etc/systemd/system/${unit}`),
  ];
  const nspawn = ['systemd-nspawn', '--boot', '--register=no', '--keep-unit', `--machine=${name}`, '-D', tree, '--volatile=overlay', '--system-call-filter=bpf', '--private-network', ...binds];
  // Our own cgroup first (nspawn would otherwise leave payload/supervisor at the top level).
  const script = `${cgroups.map((cg) => `echo $$ > ${cg}/cgroup.procs`).join('; ')}; exec ${nspawn.map((a) => `'${a}'`).join(' ')}`;
  const child = spawn('bash', ['-c', script], { env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise((r) => child.once('exit', () => r()));
  const cleanupCgroups = () => {
    for (const cg of cgroups.reverse()) removeCgroup(cg);
  };

  let pid = 0;
  const deadline = Date.now() + 60_000;
  try {
    while (!pid) {
      if (child.exitCode !== null) throw new Error(`systemd-nspawn exited ${child.exitCode}: ${out}`);
      if (Date.now() > deadline) throw new Error(`the container did not start: ${out}`);
      // nspawn's child is the container's PID 1 (systemd). Its short-lived outer child is named
      // systemd-nspawn too, so the name must match exactly: a pid that exits is no container.
      const ps = await run('ps', ['--ppid', String(child.pid), '-o', 'pid=,comm='], { allowFail: true });
      const line = ps.stdout.split('\n').find((l) => /^\s*\d+\s+systemd$/.test(l));
      if (line) pid = Number(line.trim().split(/\s+/)[0]);
      else await sleep(100);
    }
    while (!existsSync(`/proc/${pid}/root/run/systemd/private`)) {
      if (Date.now() > deadline) throw new Error(`systemd did not come up: ${out}`);
      if (!existsSync(`/proc/${pid}`)) throw new Error(`the container's PID 1 (${pid}) exited: ${out}`);
      await sleep(100);
    }
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    cleanupCgroups();
    throw err;
  }

  /** Run a command inside the container (all namespaces); never rejects for an exit code. */
  const exec = (args) => run('nsenter', ['-t', String(pid), '-a', '--', ...args], { allowFail: true });
  const booted = {
    name,
    pid,
    exec,
    async execOk(args) {
      const r = await exec(args);
      if (r.code !== 0) throw new Error(`${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
      return r.stdout;
    },
    hostPath: (inside) => `/proc/${pid}/root${inside}`,
    /** `systemctl show UNIT -pP…` as an object. */
    async show(unit, props) {
      const out = await booted.execOk(['systemctl', 'show', unit, ...props.map((p) => `-p${p}`)]);
      return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    },
    async shutdown() {
      if (child.exitCode === null) {
        // SIGRTMIN+4 asks systemd for a clean poweroff.
        await run('kill', ['-s', 'SIGRTMIN+4', String(pid)], { allowFail: true });
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
  await booted.exec(['systemctl', 'is-system-running', '--wait']);
  return booted;
}
