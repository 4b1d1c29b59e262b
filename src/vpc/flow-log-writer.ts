/**
 * Writes flow-log records: appended to `<dir>/<flow log id>.log`, which is renamed to `.1`
 * (older ones shifted up to {@link FLOW_LOG_KEEP_FILES}) before it would grow past the flow
 * log's maximum size; and kept in memory, the newest {@link FLOW_LOG_RING} with a sequence
 * number each, for `flow-logs tail`. Writes are queued in order and never awaited by the data
 * plane (the engine only counts); a failed write is logged and counted, and the next one goes on.
 */
import { mkdirSync } from 'node:fs';
import { appendFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { FlowLogLine, FlowLogRecord, FlowLogRecords } from '../api/flow-logs.js';
import { oneLine } from '../common/errors.js';
import type { Logger } from '../log/logger.js';

/** Rotated files kept per flow log (`.1` newest). */
export const FLOW_LOG_KEEP_FILES = 4;
/** Records `tail` can show (since the daemon started). */
export const FLOW_LOG_RING = 10000;

export class FlowLogWriter {
  private readonly ring: FlowLogLine[] = [];
  private seq = 0;
  private chain: Promise<void> = Promise.resolve();
  /** Bytes in each flow log's current file, once known. */
  private readonly sizes = new Map<string, number>();
  writeErrors = 0;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  file(flowLogId: string): string {
    return path.join(this.dir, `${flowLogId}.log`);
  }

  /** Queue one ENI's records for these flow logs; each record enters the tail ring once. */
  write(eniId: string, logs: FlowLogRecord[], lines: string[]): void {
    if (!lines.length) return;
    for (const text of lines) this.ring.push({ seq: ++this.seq, eniId, text });
    if (this.ring.length > FLOW_LOG_RING) this.ring.splice(0, this.ring.length - FLOW_LOG_RING);
    for (const fl of logs) {
      this.chain = this.chain.then(() =>
        this.append(fl, lines).catch((err) => {
          this.writeErrors++;
          this.log.warn({ flowLog: fl.id, err: oneLine(err) }, 'cannot write flow log records');
        }),
      );
    }
  }

  /** Resolves once every queued write is done. */
  flush(): Promise<void> {
    return this.chain;
  }

  /** Records after `after` (only `eniId`'s if given), at most `limit`, the newest. */
  records(query: { eniId?: string; after?: number; limit?: number }): FlowLogRecords {
    const after = query.after ?? 0;
    const hits = this.ring.filter((r) => r.seq > after && (query.eniId === undefined || r.eniId === query.eniId));
    return { records: hits.slice(-(query.limit ?? 100)), next: this.seq };
  }

  /** Whole records only: a record that would take the file past its size goes to a fresh one. */
  private async append(fl: FlowLogRecord, lines: string[]): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.file(fl.id);
    let size = this.sizes.get(fl.id) ?? (await stat(file).then((s) => s.size, () => 0));
    let batch = '';
    for (const line of lines) {
      const text = `${line}\n`;
      if (size > 0 && size + Buffer.byteLength(text) > fl.maxFileBytes) {
        if (batch) await appendFile(file, batch, { mode: 0o600 });
        batch = '';
        await this.rotate(file);
        size = 0;
      }
      batch += text;
      size += Buffer.byteLength(text);
    }
    if (batch) await appendFile(file, batch, { mode: 0o600 });
    this.sizes.set(fl.id, size);
  }

  private async rotate(file: string): Promise<void> {
    await unlink(`${file}.${FLOW_LOG_KEEP_FILES}`).catch(() => {});
    for (let i = FLOW_LOG_KEEP_FILES - 1; i >= 1; i--) await rename(`${file}.${i}`, `${file}.${i + 1}`).catch(() => {});
    await rename(file, `${file}.1`);
  }
}
