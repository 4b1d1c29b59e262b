/**
 * Console rotation on real files (a writer holding the file open with O_APPEND, as QEMU's
 * file chardev with append=on does), its settings, and the --start-timeout check.
 */
import { closeSync, existsSync, openSync, readFileSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { consoleRotation, rotateConsole, rotatedName, shiftPlan } from '../../src/vm/console-log.js';
import { START_TIMEOUT_S, startTimeoutError } from '../../src/api/vms.js';
import { tempDir } from '../helpers/nitride.js';

describe('console rotation', () => {
  let t: ReturnType<typeof tempDir>;
  let live: string;
  beforeEach(() => {
    t = tempDir('nitride-console-');
    live = path.join(t.dir, 'console.log');
  });
  afterEach(() => t.cleanup());

  it('names and shifts: .1 is the newest, the oldest kept is .keep, nothing is overwritten before it moved', () => {
    expect(rotatedName('/d', 1)).toBe('/d/console.log.1');
    expect(shiftPlan('/d', 3)).toEqual([
      ['/d/console.log.2', '/d/console.log.3'],
      ['/d/console.log.1', '/d/console.log.2'],
    ]);
    expect(shiftPlan('/d', 1)).toEqual([]);
    expect(shiftPlan('/d', 0)).toEqual([]);
  });

  it('settings: 4K-1G, keep 0-100; anything else is a one-line usage error', () => {
    expect(consoleRotation(1 << 20, 3)).toEqual({ maxBytes: 1 << 20, keep: 3 });
    expect(() => consoleRotation(1024, 3)).toThrow(/^--vm-console-max must be from 4K to 1G$/);
    expect(() => consoleRotation(2 ** 31, 3)).toThrow(/--vm-console-max/);
    expect(() => consoleRotation(4096, -1)).toThrow(/^--vm-console-keep must be a whole number from 0 to 100$/);
    expect(() => consoleRotation(4096, 1.5)).toThrow(/--vm-console-keep/);
  });

  it('--start-timeout: whole seconds within the range', () => {
    expect(startTimeoutError(START_TIMEOUT_S.default)).toBeUndefined();
    expect(startTimeoutError(1)).toBeUndefined();
    expect(startTimeoutError(600)).toBeUndefined();
    for (const bad of [0, 601, 2.5, NaN, -3]) expect(startTimeoutError(bad)).toBe('--start-timeout must be a whole number of seconds from 1 to 600');
  });

  it('copy-truncate under a writer that keeps its O_APPEND fd: old files shift, the oldest drops, new writes land at 0', async () => {
    const settings = consoleRotation(4096, 2);
    const fd = openSync(live, 'a');
    try {
      writeSync(fd, 'x'.repeat(4096));
      expect(await rotateConsole(live, t.dir, settings)).toBe(0); // at the cap, not over it
      for (const [i, ch] of ['a', 'b', 'c'].entries()) {
        writeSync(fd, ch.repeat(5000 + i));
        const moved = await rotateConsole(live, t.dir, settings);
        expect(moved).toBe(i === 0 ? 4096 + 5000 : 5000 + i);
      }
      writeSync(fd, 'after');
    } finally {
      closeSync(fd);
    }
    // No hole of NULs: the writer's next write went to the new end.
    expect(readFileSync(live, 'utf8')).toBe('after');
    expect(readFileSync(rotatedName(t.dir, 1), 'utf8')).toBe('c'.repeat(5002));
    expect(readFileSync(rotatedName(t.dir, 2), 'utf8')).toBe('b'.repeat(5001));
    expect(existsSync(rotatedName(t.dir, 3))).toBe(false);
  });

  it('forced (a VM started again): any non-empty file rotates; keep 0 only truncates', async () => {
    writeFileSync(live, 'previous run\n');
    expect(await rotateConsole(live, t.dir, consoleRotation(4096, 0), true)).toBe(13);
    expect(readFileSync(live, 'utf8')).toBe('');
    expect(existsSync(rotatedName(t.dir, 1))).toBe(false);
    expect(await rotateConsole(live, t.dir, consoleRotation(4096, 1), true)).toBe(0); // empty: nothing to keep
  });

  it('a link planted where the console is (the guest owns run/) is never followed', async () => {
    const victim = path.join(t.dir, 'victim');
    writeFileSync(victim, 'v'.repeat(10_000));
    symlinkSync(victim, live);
    expect(await rotateConsole(live, t.dir, consoleRotation(4096, 2))).toBe(0);
    expect(readFileSync(victim, 'utf8')).toHaveLength(10_000);
    expect(existsSync(rotatedName(t.dir, 1))).toBe(false);
  });
});
