/**
 * Drains the engine's flow-log counters: turns each local ENI's table on while a flow log
 * covers it, takes it every interval (the shortest of the flow logs covering the ENI), formats
 * the version-2 records and hands them to the writer. Ticks once a second on an unref'd timer;
 * taking a table is an O(1) swap in the engine, so the data plane never waits on this.
 */
import type { FlowLogRecord } from '../api/flow-logs.js';
import type { VpcEngine } from '../native/addon.js';
import { FLOW_LOG_MAX_KEYS, formatFlowRecords, type FlowLogTarget } from './flow-logs.js';
import type { FlowLogWriter } from './flow-log-writer.js';

export type FlowLogEngine = Pick<VpcEngine, 'setFlowLog' | 'takeFlowLog'>;

interface Watched {
  portId: number;
  logs: FlowLogRecord[];
  intervalMs: number;
  startedMs: number;
}

export class FlowLogCollector {
  private readonly watched = new Map<string, Watched>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly engine: FlowLogEngine,
    private readonly writer: FlowLogWriter,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The local ENIs (id → engine port) and the flow logs covering each: tables go on and off to
   * match; an ENI no longer covered is drained one last time first.
   */
  apply(enis: Array<{ eni: FlowLogTarget; portId: number; logs: FlowLogRecord[] }>): void {
    const seen = new Set<string>();
    for (const { eni, portId, logs } of enis) {
      if (!logs.length) continue;
      seen.add(eni.id);
      const intervalMs = Math.min(...logs.map((l) => l.interval)) * 1000;
      const w = this.watched.get(eni.id);
      if (w && w.portId === portId) {
        w.logs = logs;
        w.intervalMs = intervalMs;
        continue;
      }
      this.engine.setFlowLog(portId, FLOW_LOG_MAX_KEYS);
      this.watched.set(eni.id, { portId, logs, intervalMs, startedMs: this.now() });
    }
    for (const [eniId, w] of this.watched) {
      if (seen.has(eniId)) continue;
      this.drain(eniId, w);
      this.engine.setFlowLog(w.portId, 0);
      this.watched.delete(eniId);
    }
    if (this.watched.size && !this.timer) {
      this.timer = setInterval(() => this.tick(), 1000);
      this.timer.unref();
    } else if (!this.watched.size) {
      this.stop();
    }
  }

  /** An ENI's port went away (its table with it). */
  forget(eniId: string): void {
    this.watched.delete(eniId);
  }

  /** Drain every table now (whatever its interval). */
  drainAll(): void {
    for (const [eniId, w] of this.watched) this.drain(eniId, w);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const now = this.now();
    for (const [eniId, w] of this.watched) if (now - w.startedMs >= w.intervalMs) this.drain(eniId, w);
  }

  private drain(eniId: string, w: Watched): void {
    const now = this.now();
    const take = this.engine.takeFlowLog(w.portId);
    this.writer.write(eniId, w.logs, formatFlowRecords(eniId, take, w.startedMs, now));
    w.startedMs = now;
  }
}
