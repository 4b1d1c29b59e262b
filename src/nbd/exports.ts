/**
 * What the NBD server serves: a catalog of named exports. The server knows nothing of
 * volumes, keys or attachment rules; the catalog's `open` decides (and may refuse) when a
 * client enters transmission, and the returned lease is released when it leaves.
 */
import type { BlockBackend, BlockCapabilities } from '../volume/backend.js';
import { NitrideError } from '../common/errors.js';
import type { ExportIoStats } from './io-stats.js';
import type { IoLimiter } from '../native/addon.js';

/** Who is on the other end of a connection. */
export interface NbdPeer {
  transport: 'unix' | 'tcp' | 'stream';
  /** SO_PEERCRED of a Unix-socket client. */
  pid?: number;
  uid?: number;
  /** Remote address of a TCP client. */
  address?: string;
  port?: number;
}

/** A backend held open for one connection. */
export interface ExportLease {
  readonly backend: BlockBackend;
  /** Called once when the connection ends (after in-flight requests finished). */
  release(): Promise<void>;
}

export interface NbdExport {
  readonly name: string;
  readonly description?: string;
  /** Where connections count their requests (metrics), if the catalog keeps counters. */
  readonly stats?: ExportIoStats;
  /** Provisioned IOPS/throughput of the export, shared by all its connections (READ and WRITE wait for it). */
  readonly limiter?: IoLimiter;
  /** Size and capabilities without opening (NBD_OPT_INFO, and GO before the lease). */
  describe(): { size: number; capabilities: BlockCapabilities };
  /** Open for a connection entering transmission; throw ExportRefusedError to refuse. */
  open(peer: NbdPeer): Promise<ExportLease>;
}

export interface ExportCatalog {
  list(): readonly NbdExport[];
  lookup(name: string): NbdExport | undefined;
}

/** An export exists but may not be opened now (attached elsewhere, key disabled…). */
export class ExportRefusedError extends NitrideError {
  constructor(message: string, code = 'EXPORT_REFUSED') {
    super(message, code);
  }
}

/** A fixed catalog, for tests and for serving one backend. */
export class StaticCatalog implements ExportCatalog {
  private readonly byName = new Map<string, NbdExport>();
  constructor(exports: readonly NbdExport[]) {
    for (const e of exports) this.byName.set(e.name, e);
  }
  list(): readonly NbdExport[] {
    return [...this.byName.values()];
  }
  lookup(name: string): NbdExport | undefined {
    return this.byName.get(name);
  }
}

/** An export over one shared backend that is never closed by connections. */
export function sharedExport(name: string, backend: BlockBackend, description?: string): NbdExport {
  return {
    name,
    ...(description !== undefined ? { description } : {}),
    describe: () => ({ size: backend.size, capabilities: backend.capabilities }),
    open: async () => ({ backend, release: async () => {} }),
  };
}

/**
 * The exports of `base` named in `allowed()` (read per lookup: attachments change), for a
 * socket that serves one guest. Any other name is refused, even one that exists: the refusal
 * reaches the client as NBD_REP_ERR_POLICY at NBD_OPT_GO/INFO (EXPORT_NAME: a disconnect).
 */
export class RestrictedCatalog implements ExportCatalog {
  constructor(
    private readonly base: ExportCatalog,
    private readonly allowed: () => ReadonlySet<string>,
    /** Whose socket this is, for the refusal message ("VM web-1"). */
    private readonly owner: string,
  ) {}

  list(): readonly NbdExport[] {
    const allowed = this.allowed();
    return this.base.list().filter((e) => allowed.has(e.name));
  }

  lookup(name: string): NbdExport | undefined {
    if (!this.allowed().has(name)) throw new ExportRefusedError(`export '${name}' is not attached to ${this.owner}; this socket serves only its volumes`, 'EXPORT_NOT_ATTACHED');
    return this.base.lookup(name);
  }
}
