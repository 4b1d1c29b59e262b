/**
 * The VPC worker's busy-poll window (native/src/vpc_poll.h): how it grows, holds and shrinks on
 * the idle times the worker sees. Idle times are passed in: no sockets, no timers.
 */
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { VpcEngine, VpcPollWindow } from '../../src/native/addon.js';

const US = 1e-6;

describe('VpcPollWindow', () => {
  it('max 0 never opens a window', () => {
    const w = new VpcPollWindow(0);
    for (const idle of [1 * US, 5 * US, 50 * US, 1]) expect(w.idle(idle)).toBe('none');
    expect(w.window).toBe(0);
  });

  it('starts shut, opens after a short idle, then catches idles within it', () => {
    const w = new VpcPollWindow(200);
    expect(w.window).toBe(0);
    expect(w.idle(40 * US)).toBe('none');
    // Grown to cover the idle seen, with a quarter to spare.
    expect(w.window).toBeCloseTo(50 * US, 12);
    expect(w.idle(30 * US)).toBe('won');
    expect(w.idle(50 * US)).toBe('won');
    expect(w.window).toBeCloseTo(50 * US, 12);
  });

  it('a near miss at least doubles the window, up to max', () => {
    const w = new VpcPollWindow(200);
    w.idle(1 * US);
    expect(w.window).toBeCloseTo(10 * US, 12); // the start window
    expect(w.idle(12 * US)).toBe('lost');
    expect(w.window).toBeCloseTo(20 * US, 12);
    expect(w.idle(150 * US)).toBe('lost');
    expect(w.window).toBeCloseTo(187.5 * US, 12);
    expect(w.idle(190 * US)).toBe('lost');
    expect(w.window).toBeCloseTo(200 * US, 12);
  });

  it('idles beyond max shrink it by an eighth each, then shut it', () => {
    const w = new VpcPollWindow(200);
    w.idle(160 * US);
    expect(w.window).toBeCloseTo(200 * US, 12);
    expect(w.idle(1)).toBe('lost');
    expect(w.window).toBeCloseTo(175 * US, 12);
    let n = 1;
    while (w.window > 0) {
      expect(w.idle(1)).toBe('lost');
      n++;
    }
    // 200 µs * (7/8)^n < 10 µs first at n = 23.
    expect(n).toBe(23);
    expect(w.idle(1)).toBe('none');
    expect(w.window).toBe(0);
  });

  it('keeps catching the reply of a request/reply pattern (one long idle, one short)', () => {
    const w = new VpcPollWindow(200);
    const outcomes: string[] = [];
    for (let i = 0; i < 40; i++) {
      w.idle(0.2); // the gap between pings
      outcomes.push(w.idle(80 * US)); // the reply
    }
    // Shrinking to zero on each long idle would miss every reply; this misses a few of 40.
    expect(outcomes.filter((o) => o === 'won').length).toBeGreaterThanOrEqual(30);
    expect(w.window).toBeGreaterThanOrEqual(80 * US);
  });

  it('rejects bad arguments', () => {
    expect(() => new VpcPollWindow(-1)).toThrow(/maxUs/);
    expect(() => new VpcPollWindow(1.5)).toThrow(/maxUs/);
    const w = new VpcPollWindow(100);
    expect(() => w.idle(-1)).toThrow(/seconds must be a number >= 0/);
    expect(() => w.idle(Number.NaN)).toThrow(/seconds must be a number >= 0/);
  });

  it('an engine takes its poll bound (pollUs) and refuses one out of range', () => {
    for (const bad of [-1, 1_000_001, 2.5, Number.NaN]) {
      expect(() => new VpcEngine({ bindAddress: '127.0.0.1', bindPort: 0, pollUs: bad, onControl: () => {} })).toThrow(/pollUs/);
    }
    const e = new VpcEngine({ bindAddress: '127.0.0.1', bindPort: 0, pollUs: 0, onControl: () => {} });
    expect(e.stats().worker).toMatchObject({ pollsWon: 0, pollsLost: 0 });
    e.close();
  });

  it('a real worker polls through 50 ms gaps with a 1 s bound, and not with the default', async () => {
    const won = async (pollUs?: number): Promise<number> => {
      const e = new VpcEngine({ bindAddress: '127.0.0.1', bindPort: 0, ...(pollUs !== undefined ? { pollUs } : {}), onControl: () => {} });
      const s = createSocket('udp4');
      try {
        // Datagrams from no peer: the worker reads and counts each (unknownPeer), 50 ms apart.
        for (let i = 0; i < 12; i++) {
          s.send(Buffer.from([9, 0, 0, 0]), e.port, '127.0.0.1');
          await sleep(50);
        }
        return e.stats().worker.pollsWon;
      } finally {
        s.close();
        e.close();
      }
    };
    expect(await won(1_000_000)).toBeGreaterThanOrEqual(5);
    expect(await won()).toBe(0);
  });
});
