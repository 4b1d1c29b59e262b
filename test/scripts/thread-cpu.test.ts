/** The benchmarks' per-thread CPU readings (schedstat ns), by thread name, and their difference. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM without types (scripts/ is not compiled)
import { threadCpuNs, threadCpuNsDelta } from '../../scripts/lib/bench-common.mjs';

describe('threadCpuNs', () => {
  it("reads every thread without a filter, and only the named ones with one", () => {
    const all: Map<number, number> = threadCpuNs(process.pid);
    expect(all.get(process.pid)).toBeGreaterThan(0);
    const mainName = readFileSync(`/proc/${process.pid}/comm`, 'utf8').trim();
    const named: Map<number, number> = threadCpuNs(process.pid, [mainName.slice(0, 3)]);
    expect(named.has(process.pid)).toBe(true);
    for (const tid of named.keys()) expect(readFileSync(`/proc/${process.pid}/task/${tid}/comm`, 'utf8').startsWith(mainName.slice(0, 3))).toBe(true);
    expect(threadCpuNs(process.pid, ['no-such-thread-name']).size).toBe(0);
    expect(threadCpuNs(2 ** 30).size).toBe(0);
  });

  it('counts the CPU a thread used between two readings', () => {
    const before: Map<number, number> = threadCpuNs(process.pid);
    let x = 0;
    for (let i = 0; i < 5e6; i++) x += Math.sqrt(i);
    expect(x).toBeGreaterThan(0);
    expect(threadCpuNsDelta(before, threadCpuNs(process.pid))).toBeGreaterThan(0);
  });
});

describe('threadCpuNsDelta', () => {
  it('takes threads in both readings by difference, threads born in between whole, and ignores ended ones', () => {
    const before = new Map([
      [1, 100],
      [2, 500],
      [3, 900],
    ]);
    const after = new Map([
      [1, 150],
      [2, 500],
      [4, 70],
    ]);
    expect(threadCpuNsDelta(before, after)).toBe(50 + 0 + 70);
  });
});
