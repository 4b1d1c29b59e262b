/**
 * The option values qemuArgs writes, against the real QEMU: a console file and a QMP socket
 * whose paths hold a comma and a space (a scratch or state directory may) still work.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { qemuArgs, type QemuSpec } from '../../src/vm/qemu.js';
import { QmpClient } from '../../src/vm/qmp.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'nitride qemu, opts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The -chardev/-serial/-mon options of a full command line (the rest needs a kernel and volumes). */
function consoleAndQmp(args: string[]): string[] {
  const keep = new Set(['-chardev', '-serial', '-mon']);
  return args.flatMap((a, i) => (keep.has(a) ? [a, args[i + 1]!] : []));
}

describe('QEMU options with a comma in a path', () => {
  it('QEMU opens the console file and answers QMP on the socket', async () => {
    const spec: QemuSpec = {
      name: 'opts', kernel: '/k', append: '', memoryMiB: 64, cpus: 1, accel: 'tcg', nbdSocket: '/x', volumes: [], nics: [],
      console: { file: path.join(dir, 'console, 1.log') },
      qmpSocket: path.join(dir, 'qmp, 1.sock'),
    };
    const child = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-S', ...consoleAndQmp(qemuArgs(spec))], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      let qmp: QmpClient | undefined;
      for (let i = 0; i < 200 && !qmp; i++) {
        if (child.exitCode !== null) break;
        if (existsSync(spec.qmpSocket!)) qmp = await QmpClient.connect(spec.qmpSocket!, 5000).catch(() => undefined);
        if (!qmp) await new Promise((r) => setTimeout(r, 50));
      }
      expect(qmp, `QEMU: ${stderr}`).toBeDefined();
      expect(existsSync(spec.console !== 'stdio' ? spec.console.file : '')).toBe(true);
      await qmp!.execute('quit').catch(() => {});
      qmp!.close();
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});
