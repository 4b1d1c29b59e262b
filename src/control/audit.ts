/**
 * Audit trail of every mutating control call: who (peer uid/pid from SO_PEERCRED, or the
 * host of a network KMS call),
 * what (action and target, never request bodies, which may one day carry secrets),
 * and the result. One JSON line per call, appended and fdatasync'd before the reply.
 */
import { promises as fs } from 'node:fs';
import type { Logger } from '../log/logger.js';

/** A local process on a Unix socket (SO_PEERCRED). */
export interface LocalCaller {
  uid: number;
  gid: number;
  pid: number;
}

/** A host on the network KMS, proved by its X25519 key in the channel's handshake. */
export interface HostCaller {
  host: string;
  publicKey: string;
  address: string;
}

export type Caller = LocalCaller | HostCaller;

export interface AuditRecord {
  caller: Caller | undefined;
  /** Stable action name, e.g. `daemon.set-log-level`. */
  action: string;
  /** The resource acted on (volume id, …), when there is one. */
  target?: string;
  /** HTTP status of the reply. */
  status: number;
  /** Error code when the call failed. */
  error?: string;
  /** Extra non-secret fields a route adds (see `RouteContext.audit`). */
  details?: Record<string, unknown>;
}

export class AuditLog {
  private constructor(
    private readonly handle: fs.FileHandle,
    private readonly logger: Logger,
  ) {}

  static async open(file: string, logger: Logger): Promise<AuditLog> {
    const handle = await fs.open(file, 'a', 0o600);
    return new AuditLog(handle, logger.child({ component: 'audit' }));
  }

  async record(entry: AuditRecord): Promise<void> {
    const line = { time: new Date().toISOString(), ...entry, result: entry.status < 400 ? 'ok' : 'error' };
    this.logger.info(line, 'audit');
    await this.handle.write(JSON.stringify(line) + '\n');
    await this.handle.datasync();
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
