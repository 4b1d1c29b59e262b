/**
 * A volume's provisioned performance: merging a create/modify request into the stored limits
 * (with the checks that span fields), and the native limiter's units. Pure: no I/O.
 */
import { UsageError } from '../common/errors.js';
import type { PerformanceRequest, VolumePerformance } from '../api/volumes.js';
import type { IoLimiterLimits } from '../native/addon.js';

const MiB = 1024 * 1024;

export const UNLIMITED: VolumePerformance = {
  iops: null,
  throughputMiBps: null,
  burstIops: null,
  burstIoCredits: null,
  burstThroughputMiBps: null,
  burstMiB: null,
};

/** `current` changed by `request` (absent: unchanged, null: removed); UsageError if inconsistent. */
export function mergePerformance(current: VolumePerformance, request: PerformanceRequest): VolumePerformance {
  const p: VolumePerformance = { ...current };
  for (const key of Object.keys(UNLIMITED) as Array<keyof VolumePerformance>) {
    const v = request[key];
    if (v !== undefined) p[key] = v;
  }
  burstPair(p.iops, p.burstIops, p.burstIoCredits, '--iops', '--burst-iops', '--burst-io-credits');
  burstPair(p.throughputMiBps, p.burstThroughputMiBps, p.burstMiB, '--throughput', '--burst-throughput', '--burst-mib');
  return p;
}

function burstPair(base: number | null, rate: number | null, credits: number | null, baseFlag: string, rateFlag: string, creditFlag: string): void {
  if (rate === null && credits === null) return;
  if (rate === null || credits === null) throw new UsageError(`${rateFlag} and ${creditFlag} go together`);
  if (base === null) throw new UsageError(`${rateFlag} needs ${baseFlag} (a burst above an unlimited rate means nothing)`);
  if (rate <= base) throw new UsageError(`${rateFlag} (${rate}) must be above ${baseFlag} (${base})`);
}

/** The native limiter's units (per second, bytes). */
export function limiterLimits(p: VolumePerformance): IoLimiterLimits {
  return {
    iops: p.iops ?? 0,
    bytesPerSecond: (p.throughputMiBps ?? 0) * MiB,
    burstIops: p.burstIops ?? 0,
    burstIoCredits: p.burstIoCredits ?? 0,
    burstBytesPerSecond: (p.burstThroughputMiBps ?? 0) * MiB,
    burstBytes: (p.burstMiB ?? 0) * MiB,
  };
}
