/** Run the real `nitride kms serve` (compiled) for integration tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { KmsClient } from '../../src/kms/client.js';
import { CLI } from '../helpers/nitride.js';

export interface RunningKms {
  process: ChildProcess;
  stateDir: string;
  socket: string;
  client: KmsClient;
  /** Everything the KMS printed so far (stdout and stderr). */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export async function startKms(options: { stateDir: string; socket: string; args?: string[] }): Promise<RunningKms> {
  const child = spawn(process.execPath, [CLI, 'kms', 'serve', '--state-dir', options.stateDir, '--socket', options.socket, ...(options.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const client = new KmsClient({ socketPath: options.socket, timeoutMs: 5000 });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`kms exited with ${child.exitCode}: ${out}`);
    try {
      await client.status();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`kms did not answer within 15 s: ${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    process: child,
    stateDir: options.stateDir,
    socket: options.socket,
    client,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
