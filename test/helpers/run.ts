/** Run external tools (qemu-img, nbdinfo, fio, libnbd's Python binding…) from tests. */
import { spawn } from 'node:child_process';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion; never rejects for a non-zero exit (tests assert on `code`). */
export function run(command: string, args: string[], options: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...options.env },
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 120_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/** Like run(), but rejects with stderr unless the exit code is 0. */
export async function runOk(command: string, args: string[], options: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(command, args, options);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/**
 * Run a Python script with libnbd's binding (Debian python3-libnbd) as `import nbd`.
 * Uses Debian's /usr/bin/python3, where the binding is installed. The script's last
 * line of stdout is parsed as JSON and returned.
 */
export async function nbdPython<T = unknown>(script: string): Promise<T> {
  const out = await runOk('/usr/bin/python3', ['-c', script]);
  const last = out.trim().split('\n').pop() ?? 'null';
  return JSON.parse(last) as T;
}
