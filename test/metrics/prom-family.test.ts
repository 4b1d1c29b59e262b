/**
 * registerFamily builds prom-client's internal metric shape (src/metrics/prom-family.ts). This
 * fails on any other prom-client version until that shape has been checked again, and pins the
 * text it produces for each family type.
 */
import { createRequire } from 'node:module';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { PROM_CLIENT_VERSION, registerFamily, type Sample } from '../../src/metrics/prom-family.js';

describe('registerFamily', () => {
  it(`is written for prom-client ${PROM_CLIENT_VERSION}, the version installed`, () => {
    const installed = (createRequire(import.meta.url)('prom-client/package.json') as { version: string }).version;
    expect(installed, `prom-client ${installed} is installed: check registerFamily's shape against its Registry.getMetricsAsString, then update PROM_CLIENT_VERSION`).toBe(PROM_CLIENT_VERSION);
  });

  it('gives the registry counters, gauges and histograms read at each scrape, in order, labels escaped', async () => {
    const registry = new Registry();
    let requests = 3;
    registerFamily(registry, { name: 'x_requests_total', help: 'Requests "done"\\n.', type: 'counter', collect: () => [{ labels: { op: 'read', path: 'a"b\\c\nd' }, value: requests }] });
    registerFamily(registry, { name: 'x_up', help: 'Up.', type: 'gauge', collect: () => [{ labels: {}, value: 1 }] });
    registerFamily(registry, { name: 'x_none', help: 'Nothing yet.', type: 'gauge', collect: () => [] });
    registerFamily(registry, {
      name: 'x_seconds',
      help: 'Latency.',
      type: 'histogram',
      collect: (): Sample[] => [
        { metricName: 'x_seconds_bucket', labels: { op: 'read', le: 0.001 }, value: 1 },
        { metricName: 'x_seconds_bucket', labels: { op: 'read', le: '+Inf' }, value: 2 },
        { metricName: 'x_seconds_sum', labels: { op: 'read' }, value: 0.5 },
        { metricName: 'x_seconds_count', labels: { op: 'read' }, value: 2 },
      ],
    });
    const expected = (n: number) =>
      [
        '# HELP x_requests_total Requests "done"\\\\n.',
        '# TYPE x_requests_total counter',
        `x_requests_total{op="read",path="a\\"b\\\\c\\nd"} ${n}`,
        '',
        '# HELP x_up Up.',
        '# TYPE x_up gauge',
        'x_up 1',
        '',
        '# HELP x_none Nothing yet.',
        '# TYPE x_none gauge',
        '',
        '# HELP x_seconds Latency.',
        '# TYPE x_seconds histogram',
        'x_seconds_bucket{op="read",le="0.001"} 1',
        'x_seconds_bucket{op="read",le="+Inf"} 2',
        'x_seconds_sum{op="read"} 0.5',
        'x_seconds_count{op="read"} 2',
        '',
      ].join('\n');
    expect(await registry.metrics()).toBe(expected(3));
    requests = 4;
    expect(await registry.metrics()).toBe(expected(4));
  });
});
