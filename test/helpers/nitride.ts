/** Run the real `nitride` binary (compiled) and real daemons for integration tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ControlClient } from '../../src/control/client.js';

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

export interface RunningDaemon {
  process: ChildProcess;
  stateDir: string;
  socket: string;
  client: ControlClient;
  /** Everything the daemon printed so far (stdout then stderr). */
  output(): string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Start `nitride daemon` on the given (or a fresh) state dir and wait until it answers. */
export async function startDaemon(options: { stateDir: string; socket?: string; args?: string[] }): Promise<RunningDaemon> {
  const socket = options.socket ?? path.join(options.stateDir, 'control.sock');
  const child = spawn(process.execPath, [CLI, 'daemon', '--state-dir', options.stateDir, '--control-socket', socket, ...(options.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const client = new ControlClient({ socketPath: socket, timeoutMs: 5000 });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}: ${out}`);
    try {
      await client.get('/v1/status');
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`daemon did not answer within 15 s: ${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    process: child,
    stateDir: options.stateDir,
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
