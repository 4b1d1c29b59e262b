/** A progress bar on stderr when it is a terminal; silence otherwise (scripts, --json). */
import { formatBytes } from './output.js';

export interface ProgressBar {
  update(done: number, total: number): void;
  finish(): void;
}

export function progressBar(label: string, enabled = process.stderr.isTTY === true): ProgressBar {
  if (!enabled) return { update: () => {}, finish: () => {} };
  const started = Date.now();
  let drawn = false;
  return {
    update(done, total) {
      const width = 30;
      const ratio = total > 0 ? done / total : 1;
      const filled = Math.round(ratio * width);
      const seconds = Math.max((Date.now() - started) / 1000, 0.001);
      const rate = done / seconds;
      process.stderr.write(
        `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${mib(done)}/${mib(total)} ${mib(rate)}/s `,
      );
      drawn = true;
    },
    finish() {
      if (drawn) process.stderr.write('\n');
    },
  };
}

function mib(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : bytes >= 1 << 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : formatBytes(Math.round(bytes));
}
