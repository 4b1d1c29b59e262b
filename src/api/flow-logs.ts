/**
 * Flow logs (AWS's version-2 records) of an ENI, a subnet or a VPC, written by each daemon for
 * its local ENIs to a file under its state directory (`flow-logs/<id>.log`, rotated by size).
 *
 *     POST   /v1/flow-logs             CreateFlowLogRequest   → 201 FlowLogRecord
 *     GET    /v1/flow-logs                                    → FlowLogRecord[]
 *     DELETE /v1/flow-logs/:id                                → Deleted
 *     GET    /v1/flow-log-records?eniId=…&after=…&limit=…     → FlowLogRecords
 *
 * A record, space-separated as AWS writes them:
 * `version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status`
 * (`2`, account `-`: nitride has no accounts; start/end in Unix seconds; action ACCEPT or
 * REJECT; log-status OK, or SKIPDATA with `-` fields when the counter table was full).
 */

export const FLOW_LOG_API = {
  flowLogs: '/v1/flow-logs',
  flowLog: '/v1/flow-logs/:id',
  records: '/v1/flow-log-records',
} as const;

export type FlowLogResourceType = 'eni' | 'subnet' | 'vpc';

export interface FlowLogRecord {
  id: string;
  resourceType: FlowLogResourceType;
  resourceId: string;
  /** Aggregation interval, seconds. */
  interval: number;
  /** The file is rotated before it would grow past this. */
  maxFileBytes: number;
}

export interface CreateFlowLogRequest {
  /** An ENI, subnet or VPC id (the kind is its prefix). */
  resourceId: string;
  /** Seconds (default 60; AWS offers 60 and 600). */
  interval?: number;
  maxFileBytes?: number;
  /** Explicit id, to use the same id on every host. */
  id?: string;
}

export interface FlowLogRecordsQuery {
  /** Only this ENI's records. */
  eniId?: string;
  /** Records after this sequence number (from a previous reply's `next`). */
  after?: number;
  /** At most this many, the newest (default 100). */
  limit?: number;
}

export interface FlowLogLine {
  seq: number;
  eniId: string;
  /** The record as written to the file. */
  text: string;
}

export interface FlowLogRecords {
  records: FlowLogLine[];
  /** Pass as `after` to get only newer records. */
  next: number;
}
