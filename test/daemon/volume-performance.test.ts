/**
 * Provisioned IOPS and throughput end to end: a real daemon, real fio (ioengine=nbd), on both
 * data planes. The limiter's arithmetic is tested exactly in test/native/io-limiter.test.ts;
 * here the margins are generous (the machine is loaded) and the precise figures belong to
 * `scripts/bench-block.sh --limits`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { startHost, type TestHost } from '../helpers/nitride.js';
import { run } from '../helpers/run.js';

interface FioJob {
  error: number;
  read: { iops: number; bw_bytes: number; total_ios: number };
}

async function create(host: TestHost, args: string[]): Promise<VolumeInfo> {
  const r = await host.cli(['volume', 'create', '--json', '--size', '64M', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as VolumeInfo;
}

async function describeVolume(host: TestHost, id: string): Promise<VolumeInfo> {
  const r = await host.cli(['volume', 'describe', '--json', id]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as VolumeInfo;
}

/** fio random reads on the volume for `seconds` (after 1 s of ramp); its aggregate job. */
async function fio(v: VolumeInfo, opts: { seconds: number; bs?: string; depth?: number; jobs?: number; extra?: string[] }): Promise<FioJob> {
  const r = await run(
    'fio',
    [
      '--name=qos',
      '--ioengine=nbd',
      `--uri=${v.uri}`,
      '--rw=randread',
      `--bs=${opts.bs ?? '4k'}`,
      `--iodepth=${opts.depth ?? 32}`,
      `--numjobs=${opts.jobs ?? 1}`,
      '--group_reporting',
      '--time_based',
      '--ramp_time=1',
      `--runtime=${opts.seconds}`,
      '--output-format=json',
      ...(opts.extra ?? []),
    ],
    { timeoutMs: (opts.seconds + 60) * 1000 },
  );
  expect(r.code, r.stderr).toBe(0);
  const job = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: FioJob[] }).jobs[0]!;
  expect(job.error).toBe(0);
  return job;
}

for (const plane of ['native', 'js'] as const) {
  describe(`provisioned performance, ${plane} data plane`, () => {
    let host: TestHost;
    beforeAll(async () => {
      host = await startHost({ daemonArgs: ['--nbd-data-plane', plane] });
    });
    afterAll(async () => {
      await host?.stop();
    });

    it('holds fio QD32 4k random reads to 1000 IOPS, and time throttled follows', async () => {
      const v = await create(host, ['--iops', '1000']);
      expect(v.performance).toMatchObject({ iops: 1000, throughputMiBps: null });
      const job = await fio(v, { seconds: 5 });
      expect(job.read.iops).toBeGreaterThan(950);
      expect(job.read.iops).toBeLessThan(1050);
      // At the limit the whole run waited for IOPS (not for throughput).
      const after = await describeVolume(host, v.id);
      expect(after.throttled.iopsSeconds).toBeGreaterThan(4);
      expect(after.throttled.throughputSeconds).toBe(0);
    });

    it('two connections together stay within the volume limit', async () => {
      const v = await create(host, ['--iops', '1000', '--multi-attach']);
      const job = await fio(v, { seconds: 5, depth: 16, jobs: 2 });
      expect(job.read.iops).toBeGreaterThan(950);
      expect(job.read.iops).toBeLessThan(1050);
    });

    it('volume modify under load changes the rate within a second, without an I/O error', async () => {
      const v = await create(host, ['--iops', '500']);
      const prefix = path.join(host.dir, 'modify');
      // Log times are wall-clock (ms since the epoch), as Date.now().
      const running = fio(v, { seconds: 8, extra: [`--write_iops_log=${prefix}`, '--log_avg_msec=250', '--log_unix_epoch=1'] });
      await new Promise((r) => setTimeout(r, 4500));
      const before = Date.now();
      const r = await host.cli(['volume', 'modify', v.id, '--iops', '2000']);
      expect(r.code, r.stderr).toBe(0);
      const at = Date.now();
      await running; // error 0 checked there
      const samples = readFileSync(`${prefix}_iops.1.log`, 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(',').map((f) => Number(f.trim())))
        .map(([t, iops]) => ({ t: t!, iops: iops! }));
      const mean = (from: number, to: number) => {
        const s = samples.filter((x) => x.t > from && x.t <= to);
        expect(s.length).toBeGreaterThan(0);
        return s.reduce((a, x) => a + x.iops, 0) / s.length;
      };
      const trace = JSON.stringify({ before, at, samples });
      expect(mean(0, before - 250), trace).toBeGreaterThan(450);
      expect(mean(0, before - 250), trace).toBeLessThan(550);
      expect(mean(at + 1000, Math.max(...samples.map((x) => x.t))), trace).toBeGreaterThan(1800);
      expect(mean(at + 1000, Math.max(...samples.map((x) => x.t))), trace).toBeLessThan(2200);
      expect((await describeVolume(host, v.id)).performance.iops).toBe(2000);
    });
  });
}

describe('provisioned performance, live', () => {
  let host: TestHost;
  beforeAll(async () => {
    host = await startHost();
  });
  afterAll(async () => {
    await host?.stop();
  });

  it('limits throughput in MiB/s', async () => {
    const v = await create(host, ['--throughput', '20']);
    const job = await fio(v, { seconds: 5, bs: '1M', depth: 8 });
    expect(job.read.bw_bytes / 2 ** 20).toBeGreaterThan(19);
    expect(job.read.bw_bytes / 2 ** 20).toBeLessThan(21);
    const after = await describeVolume(host, v.id);
    expect(after.throttled.throughputSeconds).toBeGreaterThan(4);
    expect(after.throttled.iopsSeconds).toBe(0);
  });

  it('counts no throttled time below the limit', async () => {
    const v = await create(host, ['--iops', '1000']);
    // 200 IOPS at QD1: fio catches up after a stall of the loaded machine, so allow a blip.
    await fio(v, { seconds: 3, depth: 1, extra: ['--rate_iops=200'] });
    const after = await describeVolume(host, v.id);
    expect(after.throttled.iopsSeconds).toBeLessThan(0.05);
    expect(after.throttled.throughputSeconds).toBe(0);
  });

  it('limits persist across a daemon restart and show in describe and /metrics', async () => {
    const v = await create(host, ['--iops', '3000', '--throughput', '125', '--burst-iops', '16000', '--burst-io-credits', '5400000']);
    await host.restartDaemon();
    const after = await describeVolume(host, v.id);
    expect(after.performance).toEqual({ iops: 3000, throughputMiBps: 125, burstIops: 16000, burstIoCredits: 5400000, burstThroughputMiBps: null, burstMiB: null });
    const text = await host.cli(['volume', 'describe', v.id]);
    expect(text.stdout).toMatch(/performance:\s+3000 IOPS \(burst 16000, 5400000 credits\), 125 MiB\/s/);
    const metrics = await host.cli(['metrics']);
    expect(metrics.code, metrics.stderr).toBe(0);
    expect(metrics.stdout).toContain(`nitride_volume_provisioned_iops{volume="${v.id}"} 3000`);
    expect(metrics.stdout).toContain(`nitride_volume_performance_exceeded_iops_seconds_total{volume="${v.id}"} 0`);
    const removed = await host.cli(['volume', 'modify', v.id, '--iops', 'unlimited', '--burst-iops', 'unlimited', '--burst-io-credits', 'unlimited', '--json']);
    expect(removed.code, removed.stderr).toBe(0);
    expect((JSON.parse(removed.stdout) as VolumeInfo).performance).toMatchObject({ iops: null, throughputMiBps: 125, burstIops: null });
  });

  it('bad limits are one-line errors and the daemon keeps serving', async () => {
    const v = await create(host, []);
    for (const args of [
      ['volume', 'create', '--size', '64M', '--iops', '0'],
      ['volume', 'create', '--size', '64M', '--iops', '-5'],
      ['volume', 'create', '--size', '64M', '--iops', '99999999999'],
      ['volume', 'create', '--size', '64M', '--iops', 'lots'],
      ['volume', 'create', '--size', '64M', '--throughput', '125MB/s'],
      ['volume', 'create', '--size', '64M', '--throughput', '0'],
      ['volume', 'create', '--size', '64M', '--iops', '1000', '--burst-iops', '3000'],
      ['volume', 'create', '--size', '64M', '--iops', '3000', '--burst-iops', '1000', '--burst-io-credits', '100'],
      ['volume', 'create', '--size', '64M', '--burst-iops', '3000', '--burst-io-credits', '100'],
      ['volume', 'modify', v.id],
      ['volume', 'modify', v.id, '--iops', '0'],
      ['volume', 'modify', v.id, '--throughput', '1Gbit'],
    ]) {
      const r = await host.cli(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n'), `${args.join(' ')}: ${r.stderr}`).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect((await describeVolume(host, v.id)).performance.iops).toBeNull();
  });
});
