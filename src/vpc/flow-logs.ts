/**
 * Flow logs as records, and the version-2 record format. Pure (no I/O): the VPC model owns one
 * {@link FlowLogs}; the collector (flow-log-collector.ts) drains the engine's counters and the
 * writer (flow-log-writer.ts) stores what {@link formatFlowRecords} makes of them.
 *
 * AWS's semantics: a flow log captures the traffic of an ENI, or of every ENI of a subnet or a
 * VPC, aggregated over an interval (AWS: 60 s or 10 min; here any 1-600 s, short ones for
 * tests), one record per flow key (addresses, ports, protocol) and verdict (ACCEPT: the ACL and
 * the security groups let it through; REJECT: either dropped it). A flow log goes with its
 * resource.
 */
import { ConflictError, NotFoundError, UsageError } from '../common/errors.js';
import { idFormat, isResourceId } from '../api/ids.js';
import type { FlowLogRecord, FlowLogResourceType } from '../api/flow-logs.js';
import type { VpcFlowLogTake } from '../native/addon.js';

export const FLOW_LOG_DEFAULT_INTERVAL_S = 60;
export const FLOW_LOG_MIN_INTERVAL_S = 1;
export const FLOW_LOG_MAX_INTERVAL_S = 600;
export const FLOW_LOG_DEFAULT_FILE_BYTES = 10 * 1024 * 1024;
export const FLOW_LOG_MIN_FILE_BYTES = 1024;
export const FLOW_LOG_MAX_FILE_BYTES = 1024 * 1024 * 1024;
/** Flow keys an ENI's counter table holds per interval; packets of further keys are dropped and counted (SKIPDATA). */
export const FLOW_LOG_MAX_KEYS = 65536;
/** AWS writes the account owning the ENI; nitride has none. */
export const FLOW_LOG_ACCOUNT = '-';

const RESOURCE_PREFIXES: Array<[string, FlowLogResourceType]> = [
  ['eni-', 'eni'],
  ['subnet-', 'subnet'],
  ['vpc-', 'vpc'],
];

/** What a flow log needs to know of an ENI to say whether it covers it. */
export interface FlowLogTarget {
  id: string;
  subnetId: string;
  vpcId: string;
}

export class FlowLogs {
  private readonly logs = new Map<string, FlowLogRecord>();

  constructor(private readonly newId: () => string) {}

  /** `exists` says whether the resource is there (the model's check). */
  create(input: { resourceId: string; interval?: number; maxFileBytes?: number; id?: string }, exists: (type: FlowLogResourceType, id: string) => boolean): FlowLogRecord {
    const type = RESOURCE_PREFIXES.find(([p]) => String(input.resourceId).startsWith(p))?.[1];
    if (!type || !isResourceId(type, input.resourceId)) throw new UsageError(`'${input.resourceId}' is not an ENI, subnet or VPC id`);
    if (!exists(type, input.resourceId)) throw new NotFoundError(`${input.resourceId} does not exist`);
    const interval = checkInt(input.interval ?? FLOW_LOG_DEFAULT_INTERVAL_S, FLOW_LOG_MIN_INTERVAL_S, FLOW_LOG_MAX_INTERVAL_S, 'interval', ' seconds');
    const maxFileBytes = checkInt(input.maxFileBytes ?? FLOW_LOG_DEFAULT_FILE_BYTES, FLOW_LOG_MIN_FILE_BYTES, FLOW_LOG_MAX_FILE_BYTES, 'maximum file size', ' bytes');
    const id = input.id ?? this.newId();
    if (!isResourceId('flowLog', id)) throw new UsageError(`'${id}' is not a flow log id (${idFormat('flowLog')})`);
    if (this.logs.has(id)) throw new ConflictError(`flow log ${id} already exists`);
    const record: FlowLogRecord = { id, resourceType: type, resourceId: input.resourceId, interval, maxFileBytes };
    this.logs.set(id, record);
    return { ...record };
  }

  has(id: string): boolean {
    return this.logs.has(id);
  }

  list(): FlowLogRecord[] {
    return [...this.logs.values()].map((r) => ({ ...r }));
  }

  delete(id: string): void {
    if (!this.logs.delete(id)) throw new NotFoundError(`flow log ${id} does not exist`);
  }

  /** Its resource is gone: so are its flow logs. */
  deleteFor(resourceId: string): void {
    for (const [id, r] of this.logs) if (r.resourceId === resourceId) this.logs.delete(id);
  }

  /** The flow logs that capture this ENI's traffic. */
  covering(eni: FlowLogTarget): FlowLogRecord[] {
    return this.list().filter((r) => r.resourceId === eni.id || r.resourceId === eni.subnetId || r.resourceId === eni.vpcId);
  }
}

function checkInt(n: number, min: number, max: number, what: string, unit: string): number {
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${what} ${n} is not in ${min}-${max}${unit}`);
  return n;
}

/** The version-2 records of one ENI's counters (one line each, no newline). */
export function formatFlowRecords(eniId: string, take: VpcFlowLogTake, intervalStartMs: number, nowMs: number): string[] {
  const sec = (ms: number) => Math.floor(ms / 1000);
  const lines = take.flows
    .sort((a, b) => a.start - b.start || a.srcaddr.localeCompare(b.srcaddr))
    .map((f) =>
      [2, FLOW_LOG_ACCOUNT, eniId, f.srcaddr, f.dstaddr, f.srcport, f.dstport, f.protocol, f.packets, f.bytes, sec(f.start), sec(f.end), f.accept ? 'ACCEPT' : 'REJECT', 'OK'].join(' '),
    );
  // AWS: SKIPDATA when records were skipped during the interval (here: the table was full).
  if (take.dropped > 0) lines.push([2, FLOW_LOG_ACCOUNT, eniId, '-', '-', '-', '-', '-', '-', '-', sec(intervalStartMs), sec(nowMs), '-', 'SKIPDATA'].join(' '));
  return lines;
}
