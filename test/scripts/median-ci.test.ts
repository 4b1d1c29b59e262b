/** The benchmarks' confidence interval of a median (order statistics): the textbook ranks and coverage. */
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM without types (scripts/ is not compiled)
import { ciGoal, ciGoalNote, medianCi } from '../../scripts/lib/bench-common.mjs';

describe('medianCi', () => {
  it('takes the 3rd and 10th of 12 values (96.1 % coverage), the 4th and 13th of 16', () => {
    const twelve = [12, 3, 7, 1, 9, 5, 11, 2, 8, 4, 10, 6];
    expect(medianCi(twelve)).toEqual({ lo: 3, hi: 10, level: 1 - 2 * (79 / 4096) });
    const sixteen = [...Array(16).keys()].map((i) => i + 1);
    expect(medianCi(sixteen)).toMatchObject({ lo: 4, hi: 13 });
    expect(medianCi(sixteen).level).toBeCloseTo(1 - 2 * (697 / 65536), 12);
  });

  it('spans min..max at 6 values and gives none below (no 95 % interval exists)', () => {
    expect(medianCi([6, 5, 4, 3, 2, 1])).toEqual({ lo: 1, hi: 6, level: 1 - 2 / 64 });
    expect(medianCi([1, 2, 3, 4, 5])).toBeNull();
    expect(medianCi([1, 2, NaN, 3, 4, 5, 6])).toEqual({ lo: 1, hi: 6, level: 1 - 2 / 64 });
  });

  it('ciGoal: met on the median, resolved only when the interval lies on one side of the bound', () => {
    const below = ciGoal('g', 1.01, 1.03, { lo: 0.99, hi: 1.02 });
    expect(below).toMatchObject({ met: true, resolved: true });
    expect(ciGoalNote(below)).toBe('; resolved: 95 % CI 0.990..1.020');
    const straddles = ciGoal('g', 1.01, 1.03, { lo: 0.9, hi: 1.1 });
    expect(straddles).toMatchObject({ met: true, resolved: false });
    expect(ciGoalNote(straddles)).toBe('; NOT resolved by the pairs: 95 % CI 0.900..1.100 holds 1.03');
    expect(ciGoal('g', 1.2, 1.03, { lo: 1.1, hi: 1.3 })).toMatchObject({ met: false, resolved: true });
    expect(ciGoal('g', null, 1.03, null)).toMatchObject({ met: false, resolved: false });
    expect(ciGoalNote(ciGoal('g', 1, 1.03, null))).toBe('; NOT resolved by the pairs: 95 % CI - holds 1.03');
    expect(ciGoalNote({ goal: 'other', value: 1, met: true })).toBe('');
  });
});
