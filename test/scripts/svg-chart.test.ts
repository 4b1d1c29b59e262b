/** The benchmarks' SVG bar chart keeps every legend entry inside the picture, wrapping rows as needed. */
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM without types (scripts/ is not compiled)
import { svgBarChart } from '../../scripts/lib/bench-common.mjs';

/** [x, y, label] of the legend's text elements (the ones right of a 12×12 swatch). */
function legend(svg: string): Array<[number, number, string]> {
  return [...svg.matchAll(/<rect x="([\d.-]+)" y="([\d.-]+)" width="12" height="12" fill="[^"]+"\/>\n<text x="([\d.-]+)" y="[\d.-]+">([^<]*)<\/text>/g)].map((m) => [Number(m[3]), Number(m[2]), m[4]!]);
}

describe('svgBarChart', () => {
  it("the network chart's five paths: every legend entry within the width, in two rows", () => {
    const labels = ['nitride (AES-256-GCM, L2)', 'plain routed (no encryption)', 'OpenVPN 2.6 TAP AES-256-GCM', 'tinc 1.0 switch', 'wireguard-go (L3)'];
    const svg: string = svgBarChart({
      title: 'nitride network benchmark: guest-to-guest across two hosts',
      subtitle: 'iperf3, median of 3 reps x 5 s; relative to the plain routed path; 2 CPUs',
      groups: ['TCP 1 stream', 'TCP 4 streams', 'UDP 64-byte pps'].map((label) => ({ label })),
      series: labels.map((label) => ({ label, color: '#123456' })),
      values: [0, 1, 2].map(() => [0.6, 1, 0.2, 0.15, 0.3]),
    });
    const width = Number(/width="(\d+)"/.exec(svg)![1]);
    const entries = legend(svg);
    expect(entries.map(([, , label]) => label)).toEqual(labels);
    for (const [x, , label] of entries) {
      expect(x - 16, label).toBeGreaterThanOrEqual(0);
      // 11-px sans-serif averages well under 0.6 em per character.
      expect(x + label.length * 11 * 0.6, label).toBeLessThanOrEqual(width);
    }
    expect(new Set(entries.map(([, y]) => y)).size).toBe(2);
    expect(Number(/height="(\d+)"/.exec(svg)![1])).toBeGreaterThan(460);
  });
});
