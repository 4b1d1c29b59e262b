/**
 * The per-ENI allowance policer's arithmetic (native/src/vpc_allowance.h), on an injected clock:
 * no timers, no sockets.
 */
import { describe, expect, it } from 'vitest';
import { VpcAllowance } from '../../src/native/addon.js';
import { ENI_ALLOWANCE_DEPTH_SECONDS } from '../../src/api/vpc.js';

const T0 = 1000;

/** Frames of `bytes` (`packets` each) offered every `interval` s for `seconds`; what passed and the verdicts. */
function offer(a: VpcAllowance, bytes: number, packets: number, interval: number, seconds: number, t0 = T0) {
  const verdicts: Record<string, number> = { pass: 0, bandwidth: 0, packets: 0 };
  let passedBytes = 0;
  let firstDrop = -1;
  const n = Math.round(seconds / interval);
  for (let k = 0; k < n; k++) {
    const v = a.admit(bytes, packets, t0 + k * interval);
    verdicts[v]!++;
    if (v === 'pass') passedBytes += bytes;
    else if (firstDrop < 0) firstDrop = k;
  }
  return { verdicts, passedBytes, firstDrop };
}

describe('VpcAllowance', () => {
  it('without limits passes everything', () => {
    const a = new VpcAllowance({}, T0);
    expect(offer(a, 65536, 45, 0, 0).verdicts).toEqual({ pass: 0, bandwidth: 0, packets: 0 });
    expect(Array.from({ length: 10_000 }, () => a.admit(65536, 45, T0)).every((v) => v === 'pass')).toBe(true);
    const zero = new VpcAllowance({ bandwidth: 0, pps: 0 }, T0);
    expect(zero.admit(65536, 45, T0)).toBe('pass');
  });

  it('passes a full bucket (depth of the rate) at once, then drops for bandwidth', () => {
    expect(ENI_ALLOWANCE_DEPTH_SECONDS).toBe(0.3);
    // 2^27 bit/s, 1 KiB frames: f = 2^-14 s of the rate each; the bucket holds depth / f of them
    // (4915.2), and a frame passes while any token is left: 4916 pass.
    const f = 2 ** -14;
    const a = new VpcAllowance({ bandwidth: 2 ** 27 }, T0);
    const verdicts = Array.from({ length: 6000 }, () => a.admit(1024, 1, T0));
    const full = Math.ceil(ENI_ALLOWANCE_DEPTH_SECONDS / f);
    expect(full).toBe(4916);
    expect(verdicts.indexOf('bandwidth')).toBe(full);
    expect(verdicts.slice(full).every((v) => v === 'bandwidth')).toBe(true);
    // The last one took 0.8 of a frame beyond the bucket: once that is refilled, one more passes,
    // and the next a whole frame's time after it.
    expect(a.admit(1024, 1, T0 + 0.7 * f)).toBe('bandwidth');
    expect(a.admit(1024, 1, T0 + 0.9 * f)).toBe('pass');
    expect(a.admit(1024, 1, T0 + 1.7 * f)).toBe('bandwidth');
    expect(a.admit(1024, 1, T0 + 1.9 * f)).toBe('pass');
  });

  it('holds the long-run rate at twice the offered load, within one bucket', () => {
    const rate = 200e6;
    const a = new VpcAllowance({ bandwidth: rate }, T0);
    const frame = 1514;
    const seconds = 10;
    const { verdicts, passedBytes } = offer(a, frame, 1, (frame * 8) / (2 * rate), seconds);
    const depthBits = Math.max(65536 * 8, rate * ENI_ALLOWANCE_DEPTH_SECONDS);
    expect(passedBytes * 8).toBeGreaterThanOrEqual(rate * seconds - frame * 8);
    expect(passedBytes * 8).toBeLessThanOrEqual(rate * seconds + depthBits + frame * 8);
    expect(verdicts.packets).toBe(0);
    expect(verdicts.bandwidth).toBeGreaterThan(0);
  });

  it('drops nothing at exactly the rate, and starts dropping just above it', () => {
    const rate = 100e6;
    const frame = 1250; // 100 µs of the rate
    const seconds = 60;
    expect(offer(new VpcAllowance({ bandwidth: rate }, T0), frame, 1, 1e-4, seconds).verdicts.bandwidth).toBe(0);
    // 1 % above: the bucket drains by 1 µs per frame; then 1 frame in 101 drops.
    const over = offer(new VpcAllowance({ bandwidth: rate }, T0), frame, 1, 1e-4 / 1.01, seconds);
    const firstDrop = (ENI_ALLOWANCE_DEPTH_SECONDS - 1e-4) / (1e-4 * (1 - 1 / 1.01));
    expect(over.firstDrop).toBeGreaterThan(0.98 * firstDrop);
    expect(over.firstDrop).toBeLessThan(1.02 * firstDrop);
    const drops = seconds * 10_100 - (seconds + ENI_ALLOWANCE_DEPTH_SECONDS) * 10_000;
    expect(over.verdicts.bandwidth).toBeGreaterThan(0.98 * drops);
    expect(over.verdicts.bandwidth).toBeLessThan(1.02 * drops);
  });

  it('counts packets per segment and lets a super-frame into debt, repaid before the next', () => {
    // 100 pps: the bucket is 64 packets (the super-frame minimum, above the depth of the rate).
    const a = new VpcAllowance({ pps: 100 }, T0);
    expect(a.admit(65536, 45, T0)).toBe('pass');
    expect(a.admit(65536, 45, T0)).toBe('pass'); // 19 packets left: passes, 26 in debt
    expect(a.admit(60, 1, T0)).toBe('packets');
    expect(a.admit(60, 1, T0 + 0.25)).toBe('packets'); // 90 charged, 64 + 25 refilled
    expect(a.admit(60, 1, T0 + 0.27)).toBe('pass');
  });

  it('checks the packet allowance first and charges neither bucket for a dropped frame', () => {
    const a = new VpcAllowance({ bandwidth: 1e6, pps: 1 }, T0);
    expect(a.admit(64, 1, T0)).toBe('pass');
    // 64 packets of depth: the next 63 tiny frames pass, then 'packets' while bandwidth is still fine.
    const v = Array.from({ length: 100 }, () => a.admit(64, 1, T0));
    expect(v.indexOf('packets')).toBe(63);
    // The drops cost nothing: the bucket is empty, not in debt, so half a packet's time later one
    // passes (into debt), and the next only once that is repaid.
    expect(a.admit(64, 1, T0 + 0.5)).toBe('pass');
    expect(a.admit(64, 1, T0 + 0.9)).toBe('packets');
    expect(a.admit(64, 1, T0 + 1.1)).toBe('pass');
    // Bandwidth: 1 Mbit/s is a 524288-bit (64 KiB) bucket; a 100 KB frame empties it into debt.
    const b = new VpcAllowance({ bandwidth: 1e6, pps: 1e6 }, T0);
    expect(b.admit(100_000, 1, T0)).toBe('pass');
    expect(b.admit(64, 1, T0)).toBe('bandwidth');
    expect(b.admit(64, 1, T0 + 0.27)).toBe('bandwidth'); // 800000 - 524288 bits of debt: 0.2757 s
    expect(b.admit(64, 1, T0 + 0.28)).toBe('pass');
  });

  it('with a queue, schedules an over-limit frame for when its tokens are there, within the bound', () => {
    // 1 Mbit/s, 2 ms of queue: 1250-byte frames are 10 ms of the rate each.
    const a = new VpcAllowance({ bandwidth: 1e6, allowanceQueueUs: 2000 }, T0);
    expect(a.schedule(65536, 1, T0)).toEqual({ over: 'pass', at: T0 }); // the full bucket (64 KiB)
    expect(a.schedule(1250, 1, T0)).toEqual({ over: 'bandwidth', at: T0 }); // its debt starts now: 1250 bytes
    // Nothing left: the next may go once the 10 ms of debt are repaid, beyond 2 ms: dropped, uncharged.
    expect(a.schedule(1250, 1, T0)).toEqual({ over: 'bandwidth', at: null });
    const s = a.schedule(1250, 1, T0 + 0.009);
    expect(s.over).toBe('bandwidth');
    expect(s.at).toBeCloseTo(T0 + 0.01, 9); // queued 1 ms, charged from then on
    const t = a.schedule(1250, 1, T0 + 0.0185);
    expect(t.at).toBeCloseTo(T0 + 0.02, 9); // behind it: 1.5 ms
    expect(a.schedule(1250, 1, T0 + 0.0175).at).toBeNull(); // would wait 12.5 ms
    expect(a.schedule(1250, 1, T0 + 0.03).at).toBeCloseTo(T0 + 0.03, 9); // exactly repaid: over, at once
    expect(a.schedule(1250, 1, T0 + 0.0501)).toEqual({ over: 'pass', at: T0 + 0.0501 });
  });

  it('with a queue, holds the rate exactly at twice the offered load and drops only what would wait too long', () => {
    const rate = 200e6;
    const frame = 1514;
    const seconds = 10;
    const queue = 5e-3;
    const a = new VpcAllowance({ bandwidth: rate, allowanceQueueUs: queue * 1e6 }, T0);
    const interval = (frame * 8) / (2 * rate);
    let sent = 0;
    let dropped = 0;
    let late = 0;
    let maxWait = 0;
    for (let k = 0, t = T0; k < seconds / interval; k++, t = T0 + k * interval) {
      const s = a.schedule(frame, 1, t);
      if (s.at === null) dropped++;
      else {
        maxWait = Math.max(maxWait, s.at - t);
        if (s.at <= T0 + seconds) sent++;
        else late++;
      }
    }
    const depthBits = rate * ENI_ALLOWANCE_DEPTH_SECONDS;
    expect(sent * frame * 8).toBeGreaterThanOrEqual(rate * seconds + depthBits - 2 * frame * 8);
    expect(sent * frame * 8).toBeLessThanOrEqual(rate * seconds + depthBits + frame * 8);
    expect(maxWait).toBeLessThanOrEqual(queue);
    expect(maxWait).toBeGreaterThan(0.99 * queue);
    expect(late * frame * 8).toBeLessThanOrEqual(rate * queue + frame * 8); // what was queued at the end
    expect(dropped).toBeGreaterThan(0);
  });

  it('with a queue, counts nothing at exactly the rate and starts counting where the policer starts dropping', () => {
    const rate = 100e6;
    const frame = 1250; // 100 µs of the rate
    const firstOver = (interval: number) => {
      const a = new VpcAllowance({ bandwidth: rate, allowanceQueueUs: 5000 }, T0);
      let late = 0; // under the limit a frame goes at once
      for (let k = 0; k < 600_000; k++) {
        const s = a.schedule(frame, 1, T0 + k * interval);
        if (s.over !== 'pass') return late ? -2 : k;
        if (s.at !== T0 + k * interval) late++;
      }
      return late ? -2 : -1;
    };
    expect(firstOver(1e-4)).toBe(-1);
    const policer = offer(new VpcAllowance({ bandwidth: rate }, T0), frame, 1, 1e-4 / 1.01, 60);
    expect(firstOver(1e-4 / 1.01)).toBe(policer.firstDrop);
  });

  it('without a queue, schedule() is admit(): over-limit frames are dropped', () => {
    const a = new VpcAllowance({ pps: 10 }, T0);
    const b = new VpcAllowance({ pps: 10, allowanceQueueUs: 0 }, T0);
    for (let k = 0; k < 200; k++) {
      const t = T0 + k * 0.01;
      const s = a.schedule(64, 1, t);
      expect(s.at === null ? s.over : 'pass').toBe(b.admit(64, 1, t));
    }
  });

  it('refuses bad limits and arguments', () => {
    expect(() => new VpcAllowance({ bandwidth: -1 }, T0)).toThrow(/bandwidth/);
    expect(() => new VpcAllowance({ pps: 1.5 }, T0)).toThrow(/pps/);
    expect(() => new VpcAllowance({ pps: 10, allowanceQueueUs: 1_000_001 }, T0)).toThrow(/allowanceQueueUs/);
    expect(() => new VpcAllowance({ pps: 10 }, T0).admit(1, 0, T0)).toThrow(/packets/);
  });
});
