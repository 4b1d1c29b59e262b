/**
 * The daemon and the KMS make themselves non-dumpable (prctl PR_SET_DUMPABLE 0): keys never
 * reach a core dump, and another process of the same user cannot read their memory or
 * environment through /proc. Each check runs a control process without it, so the checks can
 * fail. Needs root (the KMS runs as nobody through setpriv, from a world-readable copy of the
 * package since the checkout may be where nobody cannot go) and core_pattern writing a plain
 * `core` file into the working directory, as on this host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, tempDir } from '../helpers/nitride.js';
import { readableCopy } from '../helpers/readable-copy.js';
import { run } from '../helpers/run.js';

const NOBODY = 65534;
const corePattern = existsSync('/proc/sys/kernel/core_pattern') ? readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim() : '';
const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/setpriv');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const children: ChildProcess[] = [];
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  cleanups.splice(0).forEach((c) => c());
});

function scratch(): string {
  const t = tempDir('nitride-harden-');
  cleanups.push(t.cleanup);
  return t.dir;
}

/** Spawn `command ARGS…`; resolves once `ready()` holds. */
async function start([command, ...args]: string[], cwd: string, ready: () => boolean): Promise<ChildProcess> {
  const child = spawn(command!, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const end = Date.now() + 15_000;
  while (!ready()) {
    if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${out}`);
    if (Date.now() > end) throw new Error(`not ready: ${out}`);
    await sleep(50);
  }
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

describe.skipIf(!canRun)('process hardening', () => {
  it.skipIf(corePattern !== 'core')('a daemon killed by SIGQUIT with an unlimited core limit leaves no core dump (a plain node does)', async () => {
    const dir = scratch();
    const withCores = (...command: string[]) => ['bash', '-c', 'ulimit -c unlimited; exec "$@"', 'bash', ...command];
    const daemonDir = path.join(dir, 'daemon');
    const controlDir = path.join(dir, 'control');
    mkdirSync(daemonDir);
    mkdirSync(controlDir);
    const socket = path.join(dir, 'run', 'control.sock');
    const daemon = await start(
      withCores(process.execPath, CLI, 'daemon', '--state-dir', `${dir}/state`, '--control-socket', socket, '--vpc-listen', '127.0.0.1:0', '--kms-socket', `${dir}/none.sock`),
      daemonDir,
      () => existsSync(socket),
    );
    const plain = await start(withCores(process.execPath, '-e', "console.log('up'); setInterval(() => {}, 1000)"), controlDir, () => true);
    await sleep(500);
    daemon.kill('SIGQUIT');
    plain.kill('SIGQUIT');
    await Promise.all([exited(daemon), exited(plain)]);
    expect(daemon.signalCode).toBe('SIGQUIT');
    expect(plain.signalCode).toBe('SIGQUIT');
    expect(readdirSync(controlDir)).toContain('core');
    expect(readdirSync(daemonDir)).toEqual([]);
  });

  it('the KMS, run as nobody, cannot be read through /proc by another nobody process (a plain node can)', async () => {
    const dir = scratch();
    chownSync(dir, NOBODY, NOBODY);
    const copy = readableCopy();
    cleanups.push(copy.cleanup);
    const socket = path.join(dir, 'kms.sock');
    const asNobody = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath];
    const kms = await start([...asNobody, copy.cli, 'kms', 'serve', '--state-dir', `${dir}/kms`, '--socket', socket], dir, () => existsSync(socket));
    const plain = await start([...asNobody, '-e', 'setInterval(() => {}, 1000)'], dir, () => true);
    await sleep(300);
    const peek = (pid: number) => run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'cat', `/proc/${pid}/environ`]);
    const control = await peek(plain.pid!);
    expect(control.code, control.stderr).toBe(0);
    const denied = await peek(kms.pid!);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Permission denied/);
  });
});
