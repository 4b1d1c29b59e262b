/** Run the real `nitride` binary (compiled) and real daemons for integration tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ControlClient } from '../../src/control/client.js';
import { KmsClient } from '../../src/kms/client.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'dist/cli/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `nitride ARGS…` to completion. */
export function nitride(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A scratch directory removed by `cleanup()`. */
export function tempDir(prefix = 'nitride-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A nitride process started by a test (daemon or KMS), with the client that talks to it. */
export interface RunningProcess<C> {
  process: ChildProcess;
  stateDir: string;
  socket: string;
  client: C;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Send `signal` (default SIGTERM) and wait; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}
export type RunningDaemon = RunningProcess<ControlClient>;
export type RunningKms = RunningProcess<KmsClient>;

/** Spawn `nitride ARGS…` and wait until `ready(client)` succeeds (15 s at most). */
async function startNitrideProcess<C>(args: string[], what: string, stateDir: string, socket: string, client: C, ready: (c: C) => Promise<unknown>): Promise<RunningProcess<C>> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}: ${out}`);
    try {
      await ready(client);
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${what} did not answer within 15 s: ${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    process: child,
    stateDir,
    socket,
    client,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Start `nitride daemon` on a state dir and wait until it answers. */
export function startDaemon(options: { stateDir: string; socket?: string; args?: string[] }): Promise<RunningDaemon> {
  const socket = options.socket ?? path.join(options.stateDir, 'control.sock');
  // Tests never listen on the host's real interfaces: the VPC underlay binds loopback unless a test says otherwise.
  const vpcListen = options.args?.includes('--vpc-listen') ? [] : ['--vpc-listen', '127.0.0.1:0'];
  const args = ['daemon', '--state-dir', options.stateDir, '--control-socket', socket, ...vpcListen, ...(options.args ?? [])];
  const client = new ControlClient({ socketPath: socket, timeoutMs: 5000 });
  return startNitrideProcess(args, 'daemon', options.stateDir, socket, client, (c) => c.get('/v1/status'));
}

/** Start `nitride kms serve` and wait until it answers. */
export function startKms(options: { stateDir: string; socket: string; args?: string[] }): Promise<RunningKms> {
  const args = ['kms', 'serve', '--state-dir', options.stateDir, '--socket', options.socket, ...(options.args ?? [])];
  const client = new KmsClient({ socketPath: options.socket, timeoutMs: 5000 });
  return startNitrideProcess(args, 'kms', options.stateDir, options.socket, client, (c) => c.status());
}

/** One "host": a KMS and a daemon wired to it, in a scratch directory. */
export interface TestHost {
  dir: string;
  kms: RunningKms;
  daemon: RunningDaemon;
  nbdSocket: string;
  /** `nitride ARGS…` against this host's daemon (and KMS, for `kms …` verbs). */
  cli(args: string[]): Promise<CliResult>;
  /** (Re)start the daemon on the same state. */
  restartDaemon(signal?: NodeJS.Signals): Promise<RunningDaemon>;
  stop(): Promise<void>;
}

export async function startHost(options: { daemonArgs?: string[]; kmsArgs?: string[] } = {}): Promise<TestHost> {
  const { dir, cleanup } = tempDir('nitride-host-');
  const kms = await startKms({ stateDir: path.join(dir, 'kms'), socket: path.join(dir, 'run-kms', 'kms.sock'), args: ['--allow-immediate-deletion', ...(options.kmsArgs ?? [])] });
  const daemonArgs = ['--kms-socket', kms.socket, ...(options.daemonArgs ?? [])];
  const socket = path.join(dir, 'run', 'control.sock');
  const begin = () => startDaemon({ stateDir: path.join(dir, 'state'), socket, args: daemonArgs });
  const host: TestHost = {
    dir,
    kms,
    daemon: await begin(),
    nbdSocket: path.join(dir, 'run', 'nbd.sock'),
    cli: (args) => nitride(args, { NITRIDE_SOCKET: socket, NITRIDE_KMS_SOCKET: kms.socket }),
    async restartDaemon(signal: NodeJS.Signals = 'SIGTERM') {
      await host.daemon.stop(signal);
      host.daemon = await begin();
      return host.daemon;
    },
    async stop() {
      await host.daemon.stop('SIGKILL');
      await kms.stop('SIGKILL');
      cleanup();
    },
  };
  return host;
}
