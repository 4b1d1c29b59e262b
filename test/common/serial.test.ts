import { describe, expect, it } from 'vitest';
import { SerialQueue } from '../../src/common/serial.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SerialQueue', () => {
  it('runs jobs one at a time in call order, each caller getting its own result', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let running = 0;
    const job = (name: string, ms: number) => async () => {
      expect(++running).toBe(1);
      log.push(`start ${name}`);
      await tick(ms);
      log.push(`end ${name}`);
      running--;
      return name;
    };
    const results = await Promise.all([q.run(job('a', 30)), q.run(job('b', 1)), q.run(job('c', 10))]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('a failure (thrown or rejected) goes to its caller only; the next job still runs after it', async () => {
    const q = new SerialQueue();
    const order: string[] = [];
    const sync = q.run(() => {
      order.push('sync');
      throw new Error('sync boom');
    });
    const async = q.run(async () => {
      order.push('async');
      await tick(5);
      throw new Error('async boom');
    });
    const after = q.run(() => {
      order.push('after');
      return 42;
    });
    await expect(sync).rejects.toThrow('sync boom');
    await expect(async).rejects.toThrow('async boom');
    expect(await after).toBe(42);
    expect(order).toEqual(['sync', 'async', 'after']);
  });

  it('a job does not start in the caller’s turn, and idle() waits for every job queued so far', async () => {
    const q = new SerialQueue();
    let ran = false;
    const done = q.run(async () => {
      await tick(20);
      ran = true;
    });
    expect(ran).toBe(false);
    q.run(() => Promise.reject(new Error('ignored by idle'))).catch(() => {});
    await q.idle();
    expect(ran).toBe(true);
    await done;
  });
});
