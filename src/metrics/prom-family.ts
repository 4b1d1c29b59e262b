/**
 * A Prometheus family whose samples are computed at each scrape, in a prom-client registry.
 * prom-client's public metric classes hold their own values (a histogram only takes single
 * observations), while nitride's counters live in the components. So the registry is handed
 * an object of the shape its text formatter reads (lib/registry.js getMetricsAsString: `name`,
 * `help`, `type`, and `get()` resolving to `{ values: [{ labels, value, metricName? }] }`).
 * That shape is prom-client's internal: this is the only place that builds it, and
 * test/metrics/prom-family.test.ts fails on any prom-client but {@link PROM_CLIENT_VERSION}
 * until the shape has been checked again.
 */
import type { Metric, Registry } from 'prom-client';

/** The prom-client version whose internal shape {@link registerFamily} builds (package.json pins it). */
export const PROM_CLIENT_VERSION = '15.1.3';

export type Labels = Record<string, string | number>;

export interface Sample {
  labels: Labels;
  value: number;
  /** For histogram series: `<name>_bucket`, `_sum`, `_count`. */
  metricName?: string;
}

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  /** Called at each scrape. */
  collect: () => Sample[];
}

export function registerFamily(registry: Registry, family: Family): void {
  const { name, help, type, collect } = family;
  const metric = { name, help, type, get: async () => ({ name, help, type, aggregator: 'sum', values: collect() }) };
  registry.registerMetric(metric as unknown as Metric);
}
