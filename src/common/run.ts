/** Run a command to its end: exit code and its output (stderr then stdout, trimmed); never rejects. */
import { execFile } from 'node:child_process';

export function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, out: `${stderr}${stdout}`.trim() });
    });
  });
}
