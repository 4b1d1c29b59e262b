/**
 * This host's copy of the fleet: every key under the fleet prefix, kept by a list and then a
 * watch from the list's revision (Kubernetes' list/watch). A batch of ENI and host records
 * changes the running view in place (./view-state.ts); anything else rebuilds it whole
 * (./records.ts). The VPC programs its engine with what changed; the keys and their revision go
 * to the snapshot file.
 *
 * Static stability: the data plane never waits on etcd. While no member answers, the VPC keeps
 * the last view (forwarding, DHCP), mutations are refused, and the status says since when.
 * When etcd answers again the watch resumes from the revision after the last one seen, or, if
 * that revision was compacted, the whole prefix is listed again. A daemon started while etcd
 * is down starts from its snapshot.
 */
import type { Watcher } from 'etcd3';
import { oneLine } from '../common/errors.js';
import { releaseMemory } from '../common/release-memory.js';
import type { Logger } from '../log/logger.js';
import type { VpcManager } from '../vpc/manager.js';
import { FLEET_PREFIX, type FleetView, type HostRecord, type ParseCache } from './records.js';
import { FleetViewState, inPlaceKey } from './view-state.js';
import { ClaimStore, isClaimKey } from './claims.js';
import { readSnapshot, writeSnapshot } from './snapshot.js';
import { toKv, type FleetStore, type StoredKv } from './store.js';

const HEALTH_EVERY_MS = 1000;
const SNAPSHOT_DELAY_MS = 300;
/** Keys changed since memory was last given back that make the next quiet spell give it back (a relist, a bulk of ENIs). */
const TRIM_AFTER_KEYS = 1000;

/** Counters of the mirror (metrics, `fleet status`). */
export interface MirrorCounters {
  /** Records left out of the view (each key at each revision counted once). */
  badRecords: number;
  /** Host records whose public key changed (the host is treated as a new one). */
  hostKeyChanges: number;
  /** Full lists of the prefix (the first one, and each after a compaction or a lost watch). */
  relists: number;
  /** Keys changed through the watch. */
  watchEvents: number;
}

export class FleetMirror {
  /** The keys the view is built from; the address and MAC claims are kept apart, compactly. */
  private readonly kvs = new Map<string, StoredKv>();
  private readonly claims = new ClaimStore();
  /** The store revision the keys are at (0 = never listed), and when the watch last brought one. */
  private revision = 0;
  private seenAt: Date | null = null;
  /** The revision of the view the VPC runs on, and when the engine was programmed with it. */
  private applied = 0;
  private appliedAt: Date | null = null;
  private degradedSince: Date | null = null;
  private lastError: string | null = null;
  private watcher: Watcher | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private snapshotTimer: NodeJS.Timeout | undefined;
  private applying: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private resyncing = false;
  private readonly seenBad = new Set<string>();
  /** Which keys passed their schema at which revision: a rebuild checks only what changed. */
  private readonly parsed: ParseCache = new Map();
  private hosts = new Map<string, HostRecord>();
  /** The view the VPC runs on, and the keys changed since (or a rebuild is due). */
  private view: FleetViewState | undefined;
  private changed = new Set<string>();
  private rebuild = true;
  /** Keys changed since memory was last given back. */
  private changedSinceTrim = 0;
  private readonly waiters: Array<{ revision: number; resolve: () => void }> = [];
  readonly counters: MirrorCounters = { badRecords: 0, hostKeyChanges: 0, relists: 0, watchEvents: 0 };
  private readonly log: Logger;

  constructor(
    private readonly store: FleetStore,
    private readonly vpc: VpcManager,
    private readonly snapshotFile: string,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'fleet' });
  }

  get hostId(): string {
    return this.store.hostId;
  }

  /** The snapshot's view first (if any), then the first list, or degraded mode if etcd does not answer. */
  async start(): Promise<void> {
    const snap = await readSnapshot(this.snapshotFile, this.hostId);
    if (snap) {
      for (const kv of snap.kvs) this.put(kv);
      this.revision = snap.revision;
      this.log.info({ revision: snap.revision, keys: snap.kvs.length }, 'fleet snapshot loaded');
      await this.apply();
    }
    await this.resync();
    this.healthTimer = setInterval(() => void this.checkHealth(), HEALTH_EVERY_MS);
    this.healthTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.healthTimer);
    clearTimeout(this.snapshotTimer);
    await this.watcher?.cancel().catch(() => {});
    await this.applying;
    await this.saveSnapshot();
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  // ---- what the rest of the fleet code reads ------------------------------------------------

  /** A key as last seen. */
  get(key: string): StoredKv | undefined {
    return isClaimKey(key) ? this.claims.get(key) : this.kvs.get(key);
  }

  /** Keys under `prefix` as last seen. */
  under(prefix: string): StoredKv[] {
    const out: StoredKv[] = [];
    for (const kv of this.kvs.values()) if (kv.key.startsWith(prefix)) out.push(kv);
    for (const kv of this.claims.under(prefix)) out.push(kv);
    return out;
  }

  /** Valid host records as last seen. */
  hostRecords(): HostRecord[] {
    return [...this.hosts.values()];
  }

  state(): { degradedSince: Date | null; lastError: string | null; revision: number; seenAt: Date | null; appliedRevision: number; appliedAt: Date | null } {
    return { degradedSince: this.degradedSince, lastError: this.lastError, revision: this.revision, seenAt: this.seenAt, appliedRevision: this.applied, appliedAt: this.appliedAt };
  }

  /** Resolves once the VPC runs on a view at `revision` or later (or the mirror closes; at most 10 s). */
  reached(revision: number): Promise<void> {
    if (this.applied >= revision || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const w = { revision, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve();
      }, 10_000).unref();
    });
  }

  /** Rebuild the view now (the local public key became known). */
  refresh(): void {
    this.rebuild = true;
    this.scheduleApply();
  }

  // ---- list, watch, health ------------------------------------------------------------------

  private async checkHealth(): Promise<void> {
    if (this.closed || this.resyncing) return;
    const ok = await this.store.healthy();
    if (!ok) return this.markDown('no etcd member answers');
    if (this.degradedSince) await this.resync();
  }

  private markDown(reason: string): void {
    this.lastError = reason;
    if (this.degradedSince) return;
    this.degradedSince = new Date();
    this.log.warn({ revision: this.revision, err: reason }, `fleet degraded: etcd unreachable; the data plane keeps the view at revision ${this.applied}`);
  }

  /** Resume the watch after the last revision seen, or list afresh when there is none. */
  private async resync(): Promise<void> {
    if (this.resyncing || this.closed) return;
    this.resyncing = true;
    try {
      if (this.revision === 0) await this.relist();
      else {
        // A compacted revision ends the watch with an error: then relist.
        if (!(await this.store.healthy())) throw new Error('no etcd member answers');
        this.startWatch(this.revision + 1);
      }
      if (this.degradedSince) this.log.info({ since: this.degradedSince.toISOString(), revision: this.revision }, 'fleet: etcd reachable again');
      this.degradedSince = null;
      this.lastError = null;
    } catch (err) {
      this.markDown(oneLine(err));
    } finally {
      this.resyncing = false;
    }
  }

  private async relist(): Promise<void> {
    const { revision, kvs } = await this.store.list(FLEET_PREFIX);
    this.counters.relists++;
    this.kvs.clear();
    this.claims.clear();
    this.parsed.clear();
    this.rebuild = true;
    for (const kv of kvs) this.put(kv);
    this.changedSinceTrim += kvs.length;
    this.revision = revision;
    this.scheduleApply();
    this.startWatch(revision + 1);
  }

  private startWatch(from: number): void {
    void this.watcher?.cancel().catch(() => {});
    const w = this.store.watch(FLEET_PREFIX, from);
    this.watcher = w;
    w.on('data', (res) => {
      if (w !== this.watcher) return;
      for (const ev of res.events) {
        const kv = toKv(ev.kv);
        if (ev.type === 'Delete') {
          this.drop(kv.key);
          this.parsed.delete(kv.key);
        } else this.put(kv);
        if (inPlaceKey(kv.key)) this.changed.add(kv.key);
        else this.rebuild = true;
        this.counters.watchEvents++;
        this.changedSinceTrim++;
      }
      this.revision = Math.max(this.revision, Number(res.header.revision));
      this.seenAt = new Date();
      this.scheduleApply();
    });
    w.on('disconnected', (err) => w === this.watcher && this.markDown(oneLine(err)));
    w.on('error', (err) => {
      if (w !== this.watcher) return;
      this.watcher = undefined;
      const compacted = /compacted/.test(oneLine(err));
      this.log.warn({ err: oneLine(err), revision: this.revision }, compacted ? 'fleet: watch revision compacted; listing again' : 'fleet: watch ended; listing again');
      this.resyncing = true;
      void this.relist()
        .catch((e) => this.markDown(oneLine(e)))
        .finally(() => (this.resyncing = false));
    });
  }

  private put(kv: StoredKv): void {
    if (isClaimKey(kv.key)) this.claims.set(kv);
    else this.kvs.set(kv.key, kv);
  }

  private drop(key: string): void {
    if (isClaimKey(key)) this.claims.delete(key);
    else this.kvs.delete(key);
  }

  // ---- the view -----------------------------------------------------------------------------

  /** Coalesces bursts of changes into one rebuild. */
  private scheduleApply(): void {
    if (this.applying) {
      this.again = true;
      return;
    }
    this.applying = (async () => {
      do {
        this.again = false;
        await new Promise((r) => setImmediate(r));
        await this.apply();
      } while (this.again && !this.closed);
    })().finally(() => (this.applying = undefined));
  }

  private async apply(): Promise<void> {
    const revision = this.revision;
    const publicKey = this.vpc.hostPublicKey() ?? undefined;
    try {
      if (!(await this.applyInPlace(publicKey))) {
        this.rebuild = false;
        this.changed = new Set();
        this.view = undefined; // the old model goes before the new one is built
        const view = new FleetViewState(this.kvs, this.hostId, publicKey, this.parsed);
        this.account(view.view());
        await this.vpc.applyFleetModel(view.view());
        this.view = view;
      }
    } catch (err) {
      this.rebuild = true;
      this.log.error({ err: oneLine(err), revision }, 'fleet: cannot apply the view');
      return;
    }
    if (revision > this.applied) this.appliedAt = new Date();
    this.applied = Math.max(this.applied, revision);
    for (const w of this.waiters.filter((x) => x.revision <= this.applied)) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve();
    }
    clearTimeout(this.snapshotTimer);
    this.snapshotTimer = setTimeout(() => void this.saveSnapshot(), SNAPSHOT_DELAY_MS);
    this.snapshotTimer.unref();
  }

  /** The changes since the last apply, in place when they allow it: false when a rebuild is due. */
  private async applyInPlace(publicKey: string | undefined): Promise<boolean> {
    const view = this.view;
    if (this.rebuild || !view || view.localPublicKey !== publicKey) return false;
    const keys = this.changed;
    this.changed = new Set();
    const applied = await this.vpc.applyFleetDelta({
      model: view.model,
      apply: () => {
        const delta = view.apply(keys, (k) => this.kvs.get(k));
        return { ...delta, kinds: view.kinds, peers: view.peers };
      },
    });
    if (applied) this.account(view.view());
    return applied;
  }

  /** Log and count what is new: refused records, changed host keys. */
  private account(view: FleetView): void {
    for (const b of view.bad) {
      const id = `${b.key}@${b.modRevision}`;
      if (this.seenBad.has(id)) continue;
      this.seenBad.add(id);
      this.counters.badRecords++;
      this.log.warn({ key: b.key, revision: b.modRevision, reason: b.reason }, 'fleet record ignored');
    }
    const next = new Map(view.hosts.map((h) => [h.hostId, h]));
    for (const [id, h] of next) {
      const old = this.hosts.get(id);
      if (old && old.publicKey !== h.publicKey) {
        this.counters.hostKeyChanges++;
        this.log.warn({ host: id, publicKey: h.publicKey }, 'fleet host key changed: treated as a new host');
      }
    }
    this.hosts = next;
  }

  private async saveSnapshot(): Promise<void> {
    if (this.revision === 0) return;
    try {
      await writeSnapshot(this.snapshotFile, { version: 1, hostId: this.hostId, revision: this.applied, kvs: [...this.kvs.values(), ...this.claims.under()] });
    } catch (err) {
      this.log.warn({ err: oneLine(err) }, 'fleet: cannot write the snapshot');
    }
    if (this.changedSinceTrim >= TRIM_AFTER_KEYS) {
      this.changedSinceTrim = 0;
      releaseMemory();
    }
  }
}
