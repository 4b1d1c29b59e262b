/**
 * The volume manager: the daemon's EBS-like and ephemeral volumes, their metadata, their
 * keys, and the NBD export catalog over them.
 *
 * Key lifecycle (the Nitro/EBS choreography):
 * - ebs: at create the KMS generates a data key and returns only its wrapped copy
 *   (GenerateDataKeyWithoutPlaintext), stored in the volume's metadata. When a client
 *   attaches (enters NBD transmission) the KMS unwraps it (Decrypt, bound to the volume id);
 *   the plaintext lives only inside the XTS cipher while at least one connection is open and
 *   is destroyed when the last one leaves.
 * - ephemeral: the key is a fresh KMS data key (GenerateDataKey; a CSPRNG key if the KMS is
 *   unreachable) whose plaintext lives only inside the open cipher and whose wrapped copy is
 *   kept in memory only. Delete, a VM stop, a daemon stop or a crash destroy it: the backing
 *   file is then noise (cryptographic wipe) and is removed. The exception is live update:
 *   under systemd, once a client attaches, the wrapped key also sits in a sealed memfd in
 *   systemd's fd store (ephemeral-keys.ts), never in a file; a restart or a crash (`kill -9`)
 *   leaves it there and the next daemon takes it back, unwrapping it through the KMS when the
 *   client reconnects. A stop also keeps the volumes of running VMs. Without the fd store,
 *   only the opt-in `--ephemeral-handover-file` keeps running VMs' volumes, by writing the
 *   wrapped key into the metadata (`handover`), read back and deleted at the next start.
 *   Metadata of ephemeral volumes found at start-up without a handover is wiped.
 *
 * Files: <state>/volumes/<id>.json (metadata, atomic writes) and <id>.img (ciphertext,
 * sparse) for local ebs; ephemeral images go to the ephemeral directory.
 *
 * RBD store (ebs volumes with a Ceph cluster): the image is named by the volume id and its
 * record (the same VolumeRecord: type, size, name, wrapped key, KMS key id, cipher, data unit,
 * created) is the image's metadata key `nitride.volume`, the one source of truth: every host
 * that sees the pool sees the volume (refresh() at start, on list/describe and every
 * RBD_REFRESH_MS). Records that do not parse or do not match their image are ignored and counted.
 *
 * One writer across hosts: an attachment opens the image on a Ceph connection of its own and
 * takes the image's advisory lock under this host's id; another host's attach finds the lock
 * and is refused, naming the holder. `detach(id, force)` fences the holder (Ceph blocklists its
 * connection's address, so it never writes again; a connection per attachment means only that
 * attachment is fenced, not the holder's other volumes) and then breaks its lock.
 * The pool refresh doubles as the cluster's health probe (cephHealth(), in `status`).
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ConflictError, NotFoundError, RuntimeError, UsageError, oneLine } from '../common/errors.js';
import { ensureDir, readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import type { Logger } from '../log/logger.js';
import { isKmsError, type KeyProvider } from '../kms/provider.js';
import { ExportRefusedError, type ExportCatalog, type ExportLease, type NbdExport, type NbdPeer } from '../nbd/exports.js';
import { ExportIoStats } from '../nbd/io-stats.js';
import type { BlockBackend, BlockCapabilities } from './backend.js';
import { EncryptedBackend, XTS_KEY_BYTES, encryptedCapabilities } from './encrypted-backend.js';
import { FileBackend, fileCapabilities } from './file-backend.js';
import { isResourceId, newResourceId } from '../api/ids.js';
import {
  MAX_VOLUME_SIZE,
  MIN_VOLUME_SIZE,
  type CopyProgress,
  type CreateVolumeRequest,
  type PerformanceRequest,
  type VolumeInfo,
  type VolumePerformance,
  type VolumeThrottled,
  type VolumeType,
} from '../api/volumes.js';
import { Performance } from '../api/volumes.schema.js';
import { SerialQueue } from '../common/serial.js';
import { IoLimiter, type RbdCluster, type RbdImage, type RbdLocker } from '../native/addon.js';
import { UNLIMITED, limiterLimits, mergePerformance } from './performance.js';
import type { DetachVolumeResult, VolumeHolder, VolumeStore } from '../api/volumes.js';
import type { CephStatus, EphemeralHandover } from '../api/daemon.js';
import type { SnapshotInfo } from '../api/snapshots.js';
import { RbdBackend } from './rbd-backend.js';
import type { EphemeralKeyStore, WrappedKeyRecord } from './ephemeral-keys.js';

/** The image metadata key holding an RBD volume's record (JSON). */
export const RBD_RECORD_KEY = 'nitride.volume';
/** The metadata key (on the volume's image) of a snapshot's record (JSON SnapshotInfo); the RBD snapshot is named by its id. */
const snapshotKey = (id: string) => `nitride.snapshot.${id}`;
/** How often the pool is re-read for volumes other hosts created or deleted. */
const RBD_REFRESH_MS = 5000;
/**
 * How long a fenced holder stays blocklisted. Long on purpose: a half-dead host that comes back
 * idle after the entry expired could write again (an image that saw the fencing refuses by itself).
 */
export const FENCE_SECONDS = 7 * 24 * 3600;

/** XTS data unit of new volumes (4 KiB: half the CPU per byte of 512). */
const DATA_UNIT = 4096;
const COPY_CHUNK = 1 << 20;

/** What is stored per volume (never a plaintext key). */
interface VolumeRecord {
  format: 1;
  id: string;
  name?: string;
  type: VolumeType;
  size: number;
  createdAt: string;
  multiAttach: boolean;
  cipher: 'aes-256-xts';
  dataUnitSize: number;
  /** Absent: local (records written before the RBD store). */
  store?: VolumeStore;
  /** ebs only: the KMS key and the data key wrapped under it. */
  kms?: WrappedKeyRecord;
  /** ephemeral only, between a daemon stop and the next start: the wrapped key handed over. */
  handover?: WrappedKeyRecord;
  /** Provisioned IOPS/throughput; absent: unlimited. */
  performance?: VolumePerformance;
}

/** KMS encryption context of an ephemeral volume's key (only ever unwrapped after a handover). */
const ephemeralContext = (id: string) => ({ volume: id, purpose: 'ephemeral-handover' });

/** What metrics read of a volume. */
export interface VolumeIoStats {
  id: string;
  name: string;
  type: VolumeType;
  /** Attached consumers (processes or hosts) and their NBD connections. */
  consumers: number;
  connections: number;
  stats: ExportIoStats;
  performance: VolumePerformance;
  /** Read when ioStats() is called. */
  throttled: VolumeThrottled;
}

export interface VolumeManagerOptions {
  /** Where ebs metadata and images live (inside the daemon's state directory). */
  volumeDir: string;
  /** Where ephemeral images live (instance-store-like local space). */
  ephemeralDir: string;
  kms: KeyProvider;
  logger: Logger;
  /** The daemon's NBD Unix socket, for URIs. */
  nbdSocket: string;
  /** host:port of the NBD TCP listener, if any, for URIs. */
  nbdTcp?: string;
  /** The Ceph cluster (connected, on the volumes' pool) for RBD-backed ebs volumes. */
  rbd?: RbdStore;
  /** Store of ebs volumes created without one (default: rbd if there is a cluster). */
  ebsStore?: VolumeStore;
  /** systemd's fd store for ephemeral keys across a live update (absent: not under systemd). */
  keyStore?: EphemeralKeyStore;
  /** Without `keyStore`: write running VMs' wrapped ephemeral keys into metadata at close (opt-in). */
  handoverFile?: boolean;
}

/** The Ceph store of rbd volumes. */
export interface RbdStore {
  /** The daemon's connection: listing, records, holders, fencing. */
  cluster: RbdCluster;
  pool: string;
  /** A new connection, one per attachment (what fencing that attachment blocklists). */
  connect: () => Promise<RbdCluster>;
  /** This host's name in the locks it takes. */
  hostId: string;
}

/** One volume at run time: its record and, while attached, its open backend. */
class Volume {
  backend: BlockBackend | undefined;
  /** Consumer identity → open connections. */
  readonly consumers = new Map<string, number>();
  /** NBD request counters since the daemon started (metrics). */
  readonly stats = new ExportIoStats();
  /** Serialises open/close of the backend. */
  readonly exclusive = new SerialQueue();
  deleted = false;
  /** ephemeral: the KMS-wrapped copy of the key, in memory only (written only for a handover). */
  wrappedEphemeralKey: WrappedKeyRecord | undefined;
  /** The provisioned performance, enforced for every connection of the volume. */
  readonly limiter: IoLimiter;

  constructor(public record: VolumeRecord) {
    this.limiter = new IoLimiter(limiterLimits(record.performance ?? UNLIMITED));
  }

  get connections(): number {
    let n = 0;
    for (const c of this.consumers.values()) n += c;
    return n;
  }
}

export class VolumeManager implements ExportCatalog {
  private readonly volumes = new Map<string, Volume>();
  private readonly log: Logger;
  /** host:port of the NBD TCP listener once bound (for URIs). */
  tcpEndpoint: string | undefined;
  /** RBD records ignored because they did not parse or match their image. */
  badRbdRecords = 0;
  private readonly badSeen = new Set<string>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  /** The last pool read: when, and why it failed (null: it worked). */
  private cephProbe: { at: Date; error: string | null } | undefined;

  constructor(private readonly options: VolumeManagerOptions) {
    this.log = options.logger.child({ component: 'volume' });
    this.tcpEndpoint = options.nbdTcp;
  }

  /** Load metadata; wipe ephemeral volumes left by a previous run (their keys died with it). */
  async load(): Promise<void> {
    await ensureDir(this.options.volumeDir);
    await ensureDir(this.options.ephemeralDir);
    for (const entry of await fs.readdir(this.options.volumeDir)) {
      if (!entry.endsWith('.json') || !isResourceId('volume', entry.slice(0, -'.json'.length))) continue;
      const record = await readJsonFile<VolumeRecord>(path.join(this.options.volumeDir, entry));
      if (!record) continue;
      if (record.type === 'ephemeral' && record.handover) {
        // Live update: the key comes back (unwrapped when QEMU reconnects); the wrapped copy leaves the disk now.
        const { handover, ...rest } = record;
        const volume = new Volume(rest);
        volume.wrappedEphemeralKey = handover;
        await this.saveRecord(rest, volume);
        this.volumes.set(record.id, volume);
        this.log.info({ volume: record.id }, 'ephemeral volume handed over from the previous daemon');
        continue;
      }
      const kept = record.type === 'ephemeral' ? this.options.keyStore?.adopt(record.id, (why) => this.log.warn({ volume: record.id, why }, 'ephemeral key in the fd store refused')) : undefined;
      if (kept) {
        const volume = new Volume(record);
        volume.wrappedEphemeralKey = kept;
        this.volumes.set(record.id, volume);
        this.log.info({ volume: record.id }, 'ephemeral volume taken over from the previous daemon (key in the fd store)');
        continue;
      }
      if (record.type === 'ephemeral') {
        await this.removeFiles(record);
        this.log.info({ volume: record.id }, 'ephemeral volume from a previous run crypto-wiped (its key is gone)');
        continue;
      }
      this.volumes.set(record.id, new Volume(record));
    }
    // Orphaned ephemeral images (crash between image and metadata writes).
    for (const entry of await fs.readdir(this.options.ephemeralDir)) {
      if (entry.endsWith('.img') && isResourceId('volume', entry.slice(0, -4)) && !this.volumes.has(entry.slice(0, -4))) await fs.rm(path.join(this.options.ephemeralDir, entry), { force: true });
    }
    if (this.options.rbd) {
      await this.refresh();
      this.refreshTimer = setInterval(() => void this.refresh().catch((err: unknown) => this.log.warn({ err: oneLine(err) }, 'cannot list RBD volumes')), RBD_REFRESH_MS);
      this.refreshTimer.unref();
    }
    this.log.info({ volumes: this.volumes.size }, 'volumes loaded');
  }

  /** Re-reads the pool: volumes created on other hosts appear, deleted ones (not attached here) go. */
  refresh(): Promise<void> {
    this.refreshing ??= this.readPool().then(
      () => {
        this.cephProbe = { at: new Date(), error: null };
      },
      (err: unknown) => {
        this.cephProbe = { at: new Date(), error: oneLine(err) };
        throw err;
      },
    ).finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /**
   * For list/describe: the pool re-read, unless the cluster is known unreachable; then what is
   * known now (the API answers at once; the background refresh finds the cluster back).
   */
  async refreshed(): Promise<void> {
    if (this.cephProbe?.error) return;
    await this.refresh().catch(() => {});
  }

  /** The Ceph store and whether it answered the last pool read (null: no cluster). */
  cephHealth(): CephStatus | null {
    const rbd = this.options.rbd;
    if (!rbd) return null;
    const p = this.cephProbe;
    return { pool: rbd.pool, hostId: rbd.hostId, reachable: p ? p.error === null : null, error: p?.error ?? null, checkedAt: p?.at.toISOString() ?? null };
  }

  private async readPool(): Promise<void> {
    const rbd = this.options.rbd;
    if (!rbd) return;
    const names = new Set((await rbd.cluster.list()).filter((n) => isResourceId('volume', n)));
    for (const [id, v] of this.volumes) {
      if (v.record.store === 'rbd' && !names.has(id) && v.connections === 0 && !v.backend) this.volumes.delete(id);
    }
    for (const id of names) {
      if (this.volumes.has(id) || this.badSeen.has(id)) continue;
      let text: string | null;
      const image = await rbd.cluster.open(id, true).catch(() => undefined);
      if (!image) continue; // being created or removed right now
      try {
        text = await image.metadataGet(RBD_RECORD_KEY);
      } finally {
        await image.close();
      }
      if (text === null) continue; // created a moment ago: its record follows
      const record = parseRbdRecord(id, text);
      const named = recordIdOf(text);
      if (!record && named !== undefined && named !== id && names.has(named)) continue; // a clone being made: it has its parent's record until its own is written
      if (!record) {
        this.badSeen.add(id);
        this.badRbdRecords++;
        this.log.warn({ volume: id }, 'RBD image with a missing or malformed nitride record ignored');
        continue;
      }
      if (!this.volumes.has(id)) this.volumes.set(id, new Volume(record));
    }
  }

  async create(opts: CreateVolumeRequest): Promise<VolumeInfo> {
    if (opts.fromSnapshot !== undefined) return this.createFromSnapshot(newResourceId('volume', randomBytes), opts);
    if (opts.size === undefined) throw new UsageError('size is required');
    validateSize(opts.size);
    const store: VolumeStore = opts.type === 'ephemeral' ? 'local' : (opts.store ?? this.options.ebsStore ?? (this.options.rbd ? 'rbd' : 'local'));
    if (opts.type === 'ephemeral' && opts.store === 'rbd') throw new UsageError('ephemeral volumes are instance store: always local');
    if (store === 'rbd' && !this.options.rbd) throw new UsageError('--store rbd needs a daemon with a Ceph cluster (--ceph-conf)');
    if (store === 'rbd') await this.refresh();
    if (opts.type === 'ephemeral' && opts.kmsKeyId) throw new UsageError('ephemeral volumes take no KMS key: their key never leaves memory');
    if (opts.name !== undefined && [...this.volumes.values()].some((v) => v.record.name === opts.name)) {
      throw new ConflictError(`a volume named '${opts.name}' exists already`);
    }
    const performance = opts.performance ? mergePerformance(UNLIMITED, opts.performance) : undefined;
    const id = newResourceId('volume', randomBytes);
    const record: VolumeRecord = {
      format: 1,
      id,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      type: opts.type,
      size: opts.size,
      createdAt: new Date().toISOString(),
      multiAttach: opts.multiAttach ?? false,
      cipher: 'aes-256-xts',
      dataUnitSize: DATA_UNIT,
      store,
      ...(performance ? { performance } : {}),
    };
    const volume = new Volume(record);
    const image = this.imagePath(record);
    if (opts.type === 'ebs') {
      const wrapped = await this.kmsCall(() => this.options.kms.generateDataKeyWithoutPlaintext(opts.kmsKeyId, { volume: id }, { bytes: XTS_KEY_BYTES }));
      record.kms = { keyId: wrapped.keyId, keyVersion: wrapped.keyVersion, wrappedKey: wrapped.ciphertextBlob.toString('base64') };
      if (store === 'rbd') {
        const { cluster } = this.options.rbd!;
        await cluster.create(id, opts.size);
        try {
          await this.writeRbdRecord(record);
        } catch (err) {
          await cluster.remove(id).catch(() => {});
          throw err;
        }
        this.volumes.set(id, volume);
        this.log.info({ volume: id, type: record.type, store, size: record.size, kmsKeyId: record.kms.keyId }, 'volume created');
        return this.info(volume);
      }
      const file = await FileBackend.create(image, opts.size);
      await file.close();
    } else {
      volume.backend = await this.freshEphemeral(volume, image);
    }
    try {
      await writeFileAtomic(this.metaPath(id), JSON.stringify(record, null, 2) + '\n');
    } catch (err) {
      await volume.backend?.close();
      await fs.rm(image, { force: true });
      throw err;
    }
    this.volumes.set(id, volume);
    this.log.info({ volume: id, type: record.type, size: record.size, kmsKeyId: record.kms?.keyId }, 'volume created');
    return this.info(volume);
  }

  /**
   * A copy-on-write RBD clone of a snapshot (instant; it shares the parent's ciphertext blocks,
   * so it keeps the snapshot's data key, which the KMS wraps anew under the clone's own context
   * and optionally another KMS key, as AWS does for a volume restored from a snapshot).
   */
  private async createFromSnapshot(id: string, opts: CreateVolumeRequest): Promise<VolumeInfo> {
    const snap = await this.describeSnapshot(opts.fromSnapshot!);
    const parent = this.get(snap.volumeId).record;
    if (opts.type !== 'ebs' || (opts.store ?? 'rbd') !== 'rbd') throw new UsageError('a volume from a snapshot is an ebs volume on rbd');
    const size = opts.size ?? snap.size;
    if (size < snap.size) throw new UsageError(`size must be at least the snapshot's ${snap.size} bytes`);
    validateSize(size);
    const performance = opts.performance ? mergePerformance(UNLIMITED, opts.performance) : undefined;
    const rewrapped = await this.kmsCall(() =>
      this.options.kms.reEncrypt(Buffer.from(parent.kms!.wrappedKey, 'base64'), { volume: parent.id }, opts.kmsKeyId, { destinationContext: { volume: id } }),
    );
    const record: VolumeRecord = {
      format: 1,
      id,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      type: 'ebs',
      size,
      createdAt: new Date().toISOString(),
      multiAttach: opts.multiAttach ?? false,
      cipher: parent.cipher,
      dataUnitSize: parent.dataUnitSize,
      store: 'rbd',
      kms: { keyId: rewrapped.keyId, keyVersion: rewrapped.keyVersion, wrappedKey: rewrapped.ciphertextBlob.toString('base64') },
      ...(performance ? { performance } : {}),
    };
    const { cluster } = this.options.rbd!;
    await cluster.clone(parent.id, snap.id, id);
    try {
      await this.withImage(id, async (image) => {
        if (size > snap.size) await image.resize(size);
        await image.metadataSet(RBD_RECORD_KEY, JSON.stringify(record));
      });
    } catch (err) {
      await cluster.remove(id).catch(() => {});
      throw err;
    }
    const volume = new Volume(record);
    this.volumes.set(id, volume);
    this.log.info({ volume: id, snapshot: snap.id, parent: parent.id, kmsKeyId: record.kms!.keyId }, 'volume created from a snapshot (clone)');
    return this.info(volume);
  }

  // ---------------------------------------------------------------------------- snapshots

  /** A crash-consistent snapshot of an rbd volume: flushed first if attached here, then an RBD snapshot. */
  async createSnapshot(volumeId: string, name?: string): Promise<SnapshotInfo> {
    const volume = this.get(volumeId);
    if (volume.record.store !== 'rbd') throw new UsageError(`volume ${volumeId} is ${volume.record.type === 'ebs' ? 'local' : 'ephemeral'}: snapshots are of rbd volumes`);
    if (name !== undefined && (await this.listSnapshots()).some((x) => x.name === name)) throw new ConflictError(`a snapshot named '${name}' exists already`);
    const snap: SnapshotInfo = { id: newResourceId('snapshot', randomBytes), volumeId, name: name ?? null, size: volume.record.size, createdAt: new Date().toISOString() };
    await volume.exclusive.run(async () => {
      await volume.backend?.flush();
      await this.withImage(volumeId, async (image) => {
        await image.metadataSet(snapshotKey(snap.id), JSON.stringify(snap));
        await image.snapCreate(snap.id);
      });
    });
    this.log.info({ snapshot: snap.id, volume: volumeId }, 'snapshot created');
    return snap;
  }

  /** Every snapshot of the rbd volumes this daemon knows (read from the images). */
  async listSnapshots(): Promise<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    for (const v of this.volumes.values()) {
      if (v.record.store !== 'rbd' || v.deleted) continue;
      await this.withImage(v.record.id, async (image) => {
        for (const s of await image.snapList()) {
          if (!isResourceId('snapshot', s.name)) continue;
          const snap = parseSnapshotRecord(v.record.id, s.name, await image.metadataGet(snapshotKey(s.name)));
          out.push(snap ?? { id: s.name, volumeId: v.record.id, name: null, size: s.size, createdAt: '' });
        }
      }).catch((err: unknown) => {
        if ((err as { code?: string }).code !== 'ENOENT') throw err;
      });
    }
    return out;
  }

  async describeSnapshot(id: string): Promise<SnapshotInfo> {
    const snap = (await this.listSnapshots()).find((s) => s.id === id);
    if (!snap) throw new NotFoundError(`no snapshot ${id}`, 'NO_SUCH_SNAPSHOT');
    return snap;
  }

  /** Refused while a volume cloned from it exists (delete those first). */
  async deleteSnapshot(id: string): Promise<void> {
    const snap = await this.describeSnapshot(id);
    await this.withImage(snap.volumeId, async (image) => {
      await image.snapRemove(id).catch((err: unknown) => {
        if ((err as { code?: string }).code === 'EBUSY') throw new ConflictError(`snapshot ${id} has volumes created from it; delete them first`, 'SNAPSHOT_IN_USE');
        throw err;
      });
      await image.metadataRemove(snapshotKey(id));
    });
    this.log.info({ snapshot: id, volume: snap.volumeId }, 'snapshot deleted');
  }

  list(): readonly NbdExport[] {
    return [...this.volumes.values()].filter((v) => !v.deleted).map((v) => this.exportOf(v));
  }

  lookup(name: string): NbdExport | undefined {
    const v = this.volumes.get(name);
    return v && !v.deleted ? this.exportOf(v) : undefined;
  }

  describeAll(): VolumeInfo[] {
    return [...this.volumes.values()].filter((v) => !v.deleted).map((v) => this.info(v));
  }

  /** Per-volume I/O counters and attachment counts, for metrics. */
  ioStats(): VolumeIoStats[] {
    return [...this.volumes.values()]
      .filter((v) => !v.deleted)
      .map((v) => ({
        id: v.record.id,
        name: v.record.name ?? '',
        type: v.record.type,
        consumers: v.consumers.size,
        connections: v.connections,
        stats: v.stats,
        performance: v.record.performance ?? UNLIMITED,
        throttled: throttledOf(v.limiter),
      }));
  }

  describe(id: string): VolumeInfo {
    return this.info(this.get(id));
  }

  /** describe() and, for an rbd volume, the host holding its lock (read from the image). */
  async describeWithHolder(id: string): Promise<VolumeInfo> {
    const volume = this.get(id);
    if (volume.record.store !== 'rbd') return this.info(volume);
    const holders = await this.withImage(id, (image) => image.lockers());
    const holder = holders.length ? holderOf(holders[0]!) : null;
    const info = this.info(volume);
    return { ...info, holder, state: holder ? 'in-use' : info.state };
  }

  /**
   * Free an rbd volume another host holds: without `force`, refused naming the holder; with it,
   * each holder is blocklisted first (its writes fail from then on), then its lock is broken.
   * Refused while attached on this host (its consumers must go first).
   */
  async detach(id: string, force: boolean): Promise<DetachVolumeResult> {
    const volume = this.get(id);
    if (volume.record.store !== 'rbd') throw new UsageError(`volume ${id} is local: only rbd volumes are held by a host`);
    const rbd = this.options.rbd!;
    return volume.exclusive.run(async () => {
      if (volume.connections > 0) {
        throw new ConflictError(`volume ${id} is attached on this host (${[...volume.consumers.keys()].join(', ')}); stop its consumers first`, 'VOLUME_IN_USE');
      }
      return this.withImage(id, async (image) => {
        const lockers = await image.lockers();
        if (lockers.length && !force) {
          throw new ConflictError(`volume ${id} is attached on ${describeHolder(holderOf(lockers[0]!))}; --force fences that host and frees the volume`, 'VOLUME_IN_USE');
        }
        return { id, fenced: await this.fence(rbd, image, id, lockers) };
      });
    });
  }

  /** Refuses to delete an rbd volume another host holds or that has snapshots (RBD would refuse less clearly). */
  private async deletable(id: string, image: RbdImage): Promise<void> {
    const lockers = await image.lockers();
    if (lockers.length) throw new ConflictError(`volume ${id} is attached on ${describeHolder(holderOf(lockers[0]!))}; detach it first`, 'VOLUME_IN_USE');
    const snaps = (await image.snapList()).map((x) => x.name);
    if (snaps.length) throw new ConflictError(`volume ${id} has snapshots (${snaps.join(', ')}); delete them first`, 'VOLUME_HAS_SNAPSHOTS');
  }

  /** Blocklists each holder, then breaks its lock (in that order: once the lock is gone another host may write, and by then the old holder cannot). */
  private async fence(rbd: RbdStore, image: RbdImage, id: string, lockers: RbdLocker[]): Promise<VolumeHolder[]> {
    const fenced: VolumeHolder[] = [];
    for (const locker of lockers) {
      const holder = holderOf(locker);
      await rbd.cluster.blocklist(locker.address, FENCE_SECONDS);
      await image.breakLock(locker.client, locker.cookie).catch((err: unknown) => {
        if ((err as { code?: string }).code !== 'ENOENT') throw err;
      });
      this.log.warn({ volume: id, host: holder.host, client: holder.client, address: holder.address }, 'volume holder fenced (blocklisted) and its lock broken');
      fenced.push(holder);
    }
    return fenced;
  }

  /** Delete a volume: its key and ciphertext are destroyed. Refused while attached. */
  async delete(id: string): Promise<void> {
    const volume = this.get(id);
    await volume.exclusive.run(async () => {
      if (volume.connections > 0) {
        throw new ConflictError(`volume ${id} is attached (${[...volume.consumers.keys()].join(', ')}); detach it first`, 'VOLUME_IN_USE');
      }
      if (volume.record.store === 'rbd') await this.withImage(id, (image) => this.deletable(id, image));
      volume.deleted = true;
      await volume.backend?.close();
      volume.backend = undefined;
      this.options.keyStore?.remove(id);
      await this.removeFiles(volume.record);
      this.volumes.delete(id);
    });
    this.log.info({ volume: id, type: volume.record.type }, volume.record.type === 'ephemeral' ? 'ephemeral volume deleted (crypto-wiped)' : 'volume deleted');
  }

  /**
   * Instance-store stop semantics: destroy an ephemeral volume's key and ciphertext and give it
   * a new key and an empty image, so it reads as zeroes and the old data is unrecoverable.
   * Refused while attached.
   */
  async wipeEphemeral(id: string): Promise<VolumeInfo> {
    const volume = this.get(id);
    if (volume.record.type !== 'ephemeral') throw new UsageError(`volume ${id} is ${volume.record.type}, not ephemeral`);
    await volume.exclusive.run(async () => {
      if (volume.connections > 0) {
        throw new ConflictError(`volume ${id} is attached (${[...volume.consumers.keys()].join(', ')}); detach it first`, 'VOLUME_IN_USE');
      }
      await volume.backend?.close(); // destroys the key schedule
      volume.backend = undefined;
      this.options.keyStore?.remove(id);
      const image = this.imagePath(volume.record);
      await fs.rm(image, { force: true });
      volume.backend = await this.freshEphemeral(volume, image);
    });
    this.log.info({ volume: id }, 'ephemeral volume crypto-wiped (new key, empty image)');
    return this.info(volume);
  }

  /** Resolves once no consumer holds the volume (false after `timeoutMs`). */
  async waitDetached(id: string, timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const volume = this.volumes.get(id);
      if (!volume || volume.deleted || volume.connections === 0) return true;
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Grow a volume. Connected clients see the new size when they reconnect. */
  async resize(id: string, size: number): Promise<VolumeInfo> {
    const volume = this.get(id);
    validateSize(size);
    if (size < volume.record.size) throw new UsageError(`volumes only grow: ${id} is ${volume.record.size} bytes`);
    await volume.exclusive.run(async () => {
      if (size === volume.record.size) return;
      if (volume.backend?.resize) await volume.backend.resize(size);
      else if (volume.record.store === 'rbd') await this.withImage(id, (image) => image.resize(size));
      else await fs.truncate(this.imagePath(volume.record), size);
      await this.saveRecord({ ...volume.record, size }, volume);
    });
    this.log.info({ volume: id, size }, 'volume resized');
    return this.info(volume);
  }

  /**
   * Elastic Volumes: change the provisioned performance. Attached connections follow at once
   * (their requests waiting for the old limits are re-reserved under the new ones).
   */
  async modify(id: string, request: PerformanceRequest): Promise<VolumeInfo> {
    const volume = this.get(id);
    await volume.exclusive.run(async () => {
      const performance = mergePerformance(volume.record.performance ?? UNLIMITED, request);
      await this.saveRecord({ ...volume.record, performance }, volume);
      volume.limiter.set(limiterLimits(performance));
    });
    this.log.info({ volume: id, performance: volume.record.performance }, 'volume performance modified');
    return this.info(volume);
  }

  /**
   * Re-wrap an ebs volume's data key under the KMS key's newest version, or under another KMS
   * key: rotation without touching the data.
   */
  async rewrap(id: string, destinationKeyId?: string): Promise<VolumeInfo> {
    const volume = this.get(id);
    const kms = volume.record.kms;
    if (!kms) throw new UsageError(`volume ${id} is ephemeral: its key is not wrapped by the KMS`);
    await volume.exclusive.run(async () => {
      const blob = Buffer.from(kms.wrappedKey, 'base64');
      const result = await this.kmsCall(() => this.options.kms.reEncrypt(blob, { volume: id }, destinationKeyId));
      await this.saveRecord(
        { ...volume.record, kms: { keyId: result.keyId, keyVersion: result.keyVersion, wrappedKey: result.ciphertextBlob.toString('base64') } },
        volume,
      );
    });
    this.log.info({ volume: id, kmsKeyId: volume.record.kms?.keyId, keyVersion: volume.record.kms?.keyVersion }, 'volume data key re-wrapped');
    return this.info(volume);
  }

  /** Copy the volume's plaintext to a raw image file (sparse: zero chunks are skipped). */
  async exportTo(id: string, file: string, signal: AbortSignal, onProgress: (p: CopyProgress) => void): Promise<CopyProgress> {
    const volume = this.get(id);
    const lease = await this.attach(volume, 'control:export');
    try {
      const out = await fs.open(file, 'w', 0o600);
      try {
        const size = lease.backend.size;
        await out.truncate(size);
        const buf = Buffer.alloc(COPY_CHUNK);
        for (let done = 0; done < size; ) {
          signal.throwIfAborted();
          const n = Math.min(COPY_CHUNK, size - done);
          const chunk = buf.subarray(0, n);
          await lease.backend.read(done, chunk);
          if (!isZero(chunk)) await out.write(chunk, 0, n, done);
          done += n;
          onProgress({ done, total: size });
        }
        await out.sync();
        return { done: size, total: size };
      } finally {
        await out.close();
      }
    } finally {
      await lease.release();
    }
  }

  /** Copy a raw image into the volume through the encryption layer (zero chunks become holes). */
  async importFrom(id: string, file: string, signal: AbortSignal, onProgress: (p: CopyProgress) => void): Promise<CopyProgress> {
    const volume = this.get(id);
    let input: fs.FileHandle;
    try {
      input = await fs.open(file, 'r');
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${oneLine(err)}`);
    }
    try {
      const total = (await input.stat()).size;
      if (total > volume.record.size) throw new UsageError(`${file} (${total} bytes) is larger than volume ${id} (${volume.record.size} bytes)`);
      const lease = await this.attach(volume, 'control:import');
      try {
        const buf = Buffer.alloc(COPY_CHUNK);
        for (let done = 0; done < total; ) {
          signal.throwIfAborted();
          const n = Math.min(COPY_CHUNK, total - done);
          const { bytesRead } = await input.read(buf, 0, n, done);
          if (bytesRead !== n) throw new RuntimeError(`${file} shrank while being imported`, 'SHORT_READ');
          // The volume's minimum block is 512: pad a ragged tail with zeroes.
          const len = Math.ceil(n / 512) * 512;
          buf.fill(0, n, len);
          const chunk = buf.subarray(0, len);
          if (isZero(chunk)) await lease.backend.zero(done, len);
          else await lease.backend.write(done, chunk);
          done += n;
          onProgress({ done, total });
        }
        await lease.backend.flush();
        return { done: total, total };
      } finally {
        await lease.release();
      }
    } finally {
      await input.close();
    }
  }

  /** How ephemeral volumes cross a daemon restart here. */
  ephemeralHandover(): EphemeralHandover {
    const { keyStore, handoverFile } = this.options;
    return { via: keyStore ? 'fd-store' : handoverFile ? 'metadata-file' : 'none', kept: keyStore?.size ?? 0 };
  }

  /**
   * Close every open backend (keys destroyed); ephemeral volumes are wiped, as on instance
   * stop, except those in `handOver` (used by running VMs) and, under systemd, those whose
   * wrapped key is in the fd store (attached since their last wipe): the next daemon takes
   * them over. Without the fd store, `handoverFile` writes running VMs' wrapped keys to
   * their metadata; otherwise they are lost.
   */
  async close(handOver: ReadonlySet<string> = new Set()): Promise<void> {
    clearInterval(this.refreshTimer);
    await this.refreshing?.catch(() => {});
    const { keyStore, handoverFile } = this.options;
    for (const volume of this.volumes.values()) {
      await volume.exclusive.run(async () => {
        await volume.backend?.close().catch((err: unknown) => this.log.error({ volume: volume.record.id, err: oneLine(err) }, 'close failed'));
        volume.backend = undefined;
        const id = volume.record.id;
        if (volume.record.type !== 'ephemeral' || volume.deleted) return;
        const wrapped = volume.wrappedEphemeralKey;
        if (keyStore && wrapped && (handOver.has(id) || keyStore.has(id)) && this.keepEphemeralKey(volume)) {
          this.log.info({ volume: id }, 'ephemeral volume kept for the next daemon (wrapped key in the fd store)');
          return;
        }
        if (!keyStore && handoverFile && wrapped && handOver.has(id)) {
          await this.saveRecord({ ...volume.record, handover: wrapped }, volume);
          this.log.info({ volume: id }, 'ephemeral volume kept for its running VM (wrapped key written to its metadata: --ephemeral-handover-file)');
          return;
        }
        if (handOver.has(id)) {
          const why = !wrapped ? 'its key was never wrapped (KMS was down at create)' : keyStore ? 'the fd store refused its key' : 'no systemd fd store (see README, Live update)';
          this.log.warn({ volume: id }, `ephemeral volume of a running VM is lost: ${why}`);
        }
        keyStore?.remove(id);
        await this.removeFiles(volume.record);
      });
    }
  }

  // ---------------------------------------------------------------------------- attach

  private exportOf(volume: Volume): NbdExport {
    const record = volume.record;
    return {
      name: record.id,
      description: `nitride ${record.type} volume${record.name ? ` ${record.name}` : ''}`,
      stats: volume.stats,
      limiter: volume.limiter,
      describe: () => ({ size: volume.record.size, capabilities: VOLUME_CAPABILITIES }),
      open: (peer: NbdPeer) => this.attach(volume, consumerOf(peer)),
    };
  }

  /** Open (unwrapping the key if needed) for one more connection of `consumer`. */
  private async attach(volume: Volume, consumer: string): Promise<ExportLease> {
    const id = volume.record.id;
    await departed(volume, consumer);
    return volume.exclusive.run(async () => {
      if (volume.deleted) throw new ExportRefusedError(`volume ${id} was deleted`);
      const others = [...volume.consumers.keys()].filter((c) => c !== consumer);
      if (!volume.record.multiAttach && others.length > 0) {
        throw new ExportRefusedError(`volume ${id} is attached to another consumer (${others.join(', ')}); create it with --multi-attach to share it`, 'VOLUME_IN_USE');
      }
      if (!volume.backend) {
        if (volume.record.type === 'ephemeral') {
          if (!volume.wrappedEphemeralKey) throw new ExportRefusedError(`ephemeral volume ${id} lost its key`);
          volume.backend = await this.openWrapped(volume.record, volume.wrappedEphemeralKey, ephemeralContext(id));
        } else volume.backend = await this.openWrapped(volume.record, volume.record.kms!, { volume: id });
        this.log.info({ volume: id, consumer }, 'volume attached (data key unwrapped)');
      }
      volume.consumers.set(consumer, (volume.consumers.get(consumer) ?? 0) + 1);
      if (volume.record.type === 'ephemeral') this.keepEphemeralKey(volume);
      const backend = volume.backend;
      let released = false;
      return {
        backend,
        release: () =>
          volume.exclusive.run(async () => {
            if (released) return;
            released = true;
            const left = (volume.consumers.get(consumer) ?? 1) - 1;
            if (left > 0) volume.consumers.set(consumer, left);
            else volume.consumers.delete(consumer);
            // Ephemeral volumes stay open: their key exists nowhere else.
            if (volume.connections === 0 && volume.record.type === 'ebs' && volume.backend) {
              await volume.backend.close(); // flushes, destroys the key schedule
              volume.backend = undefined;
              this.log.info({ volume: id }, 'volume detached (data key destroyed)');
            }
          }),
      };
    });
  }

  /** Open a volume whose key is wrapped by the KMS (unwrapped here, zeroed after use). */
  private async openWrapped(record: VolumeRecord, kms: WrappedKeyRecord, context: Record<string, string>): Promise<BlockBackend> {
    let key: Buffer;
    try {
      ({ plaintext: key } = await this.options.kms.decrypt(Buffer.from(kms.wrappedKey, 'base64'), context));
    } catch (err) {
      const why = isKmsError(err) ? oneLine(err) : `KMS unavailable: ${oneLine(err)}`;
      throw new ExportRefusedError(`cannot attach ${record.id}: ${why}`, 'VOLUME_KEY_UNAVAILABLE');
    }
    try {
      if (record.store === 'rbd') {
        const rbd = this.options.rbd;
        if (!rbd) throw new ExportRefusedError(`cannot attach ${record.id}: this daemon has no Ceph cluster`);
        const image = await this.openLocked(rbd, record.id);
        const lower = new RbdBackend(image, `${rbd.pool}/${record.id}`, false, rbd.hostId);
        try {
          return new EncryptedBackend(lower, key, { dataUnitSize: record.dataUnitSize as 512 | 4096 });
        } catch (err) {
          await lower.close();
          throw err;
        }
      }
      const file = await FileBackend.open(this.imagePath(record));
      try {
        return new EncryptedBackend(file, key, { dataUnitSize: record.dataUnitSize as 512 | 4096 });
      } catch (err) {
        await file.close();
        throw err;
      }
    } finally {
      key.fill(0);
    }
  }

  /**
   * Attached: from now on a restart or a crash of the daemon must not lose it (see close()).
   * Whether the store holds its key; a store that fails is logged, never thrown (close() must
   * still close every other volume and wipe this one).
   */
  private keepEphemeralKey(volume: Volume): boolean {
    const { keyStore } = this.options;
    const id = volume.record.id;
    if (!keyStore || !volume.wrappedEphemeralKey) return false;
    if (keyStore.has(id)) return true;
    try {
      keyStore.keep(id, volume.wrappedEphemeralKey);
      return true;
    } catch (err) {
      this.log.warn({ volume: id, err: oneLine(err) }, 'cannot keep the ephemeral key in the fd store: a daemon crash would lose the volume');
      return false;
    }
  }

  /** The image on a connection of its own, locked under this host's id; refused naming another holder. */
  private async openLocked(rbd: RbdStore, id: string): Promise<RbdImage> {
    const refuse = (why: string, code = 'VOLUME_UNAVAILABLE') => new ExportRefusedError(`cannot attach ${id}: ${why}`, code);
    let image: RbdImage;
    try {
      const conn = await rbd.connect();
      try {
        image = await conn.open(id);
      } finally {
        await conn.close(); // the image keeps the connection until it closes
      }
    } catch (err) {
      throw refuse(`rbd ${rbd.pool}/${id}: ${oneLine(err)}`);
    }
    try {
      await image.lock(rbd.hostId).catch(async (err: unknown) => {
        // Our own host's lock while nothing here has the volume open: a previous run of this
        // daemon (crash, kill). Fence that client and take over (host ids are unique in a fleet).
        if ((err as { code?: string }).code !== 'EBUSY') throw err;
        const lockers = await image.lockers();
        if (!lockers.length || lockers.some((l) => l.cookie !== rbd.hostId)) throw err;
        await this.fence(rbd, image, id, lockers);
        await image.lock(rbd.hostId);
      });
      return image;
    } catch (err) {
      const busy = (err as { code?: string }).code === 'EBUSY';
      const lockers = busy ? await image.lockers().catch(() => []) : [];
      await image.close().catch(() => {});
      if (busy) {
        const who = lockers.length ? describeHolder(holderOf(lockers[0]!)) : 'another host';
        throw new ExportRefusedError(`volume ${id} is attached on ${who}; \`nitride volume detach --force ${id}\` fences it`, 'VOLUME_IN_USE');
      }
      throw refuse(`cannot lock rbd ${rbd.pool}/${id}: ${oneLine(err)}`);
    }
  }

  /** `fn` over the image opened on the daemon's connection (closed after). */
  private async withImage<T>(id: string, fn: (image: RbdImage) => Promise<T>): Promise<T> {
    const image = await this.options.rbd!.cluster.open(id);
    try {
      return await fn(image);
    } finally {
      await image.close();
    }
  }

  // ---------------------------------------------------------------------------- helpers

  private get(id: string): Volume {
    const v = this.volumes.get(id);
    if (!v || v.deleted) throw new NotFoundError(`no volume ${id}`, 'NO_SUCH_VOLUME');
    return v;
  }

  private info(volume: Volume): VolumeInfo {
    const r = volume.record;
    const { nbdSocket } = this.options;
    const nbdTcp = this.tcpEndpoint;
    return {
      id: r.id,
      name: r.name ?? null,
      type: r.type,
      size: r.size,
      createdAt: r.createdAt,
      multiAttach: r.multiAttach,
      store: r.store ?? 'local',
      encryption: { cipher: r.cipher, dataUnitSize: r.dataUnitSize, kmsKeyId: r.kms?.keyId ?? null, keyVersion: r.kms?.keyVersion ?? null },
      state: volume.connections > 0 ? 'in-use' : 'available',
      attachments: [...volume.consumers].map(([consumer, connections]) => ({ consumer, connections })),
      uri: `nbd+unix:///${r.id}?socket=${nbdSocket}`,
      tcpUri: nbdTcp ? `nbd://${nbdTcp}/${r.id}` : null,
      performance: r.performance ?? UNLIMITED,
      throttled: throttledOf(volume.limiter),
    };
  }

  /**
   * A new ephemeral image and the cipher over it, under a fresh KMS data key whose wrapped copy
   * stays in memory (for a live-update handover); a CSPRNG key when the KMS is unreachable.
   * One GenerateDataKey per create and per crypto-wipe: not waste, the new key is the wipe.
   */
  private async freshEphemeral(volume: Volume, image: string): Promise<BlockBackend> {
    const id = volume.record.id;
    let key: Buffer;
    try {
      const dk = await this.options.kms.generateDataKey(undefined, ephemeralContext(id), { bytes: XTS_KEY_BYTES });
      key = dk.plaintext;
      volume.wrappedEphemeralKey = { keyId: dk.keyId, keyVersion: dk.keyVersion, wrappedKey: dk.ciphertextBlob.toString('base64') };
    } catch (err) {
      this.log.warn({ volume: id, err: oneLine(err) }, 'KMS unavailable: ephemeral key from the CSPRNG (it will not survive a daemon restart)');
      key = Buffer.alloc(XTS_KEY_BYTES);
      randomFillSync(key);
      volume.wrappedEphemeralKey = undefined;
    }
    try {
      if (key.subarray(0, 32).equals(key.subarray(32))) throw new RuntimeError('XTS key halves are equal; try again', 'BAD_KEY');
      const file = await FileBackend.create(image, volume.record.size);
      return new EncryptedBackend(file, key, { dataUnitSize: DATA_UNIT }); // zeroes `key`
    } finally {
      key.fill(0);
    }
  }

  private async saveRecord(record: VolumeRecord, volume: Volume): Promise<void> {
    if (record.store === 'rbd') {
      await this.writeRbdRecord(record);
      volume.record = record;
      return;
    }
    await writeFileAtomic(this.metaPath(record.id), JSON.stringify(record, null, 2) + '\n');
    volume.record = record;
  }

  /** The record as the image's metadata (written through librbd: on the OSDs when it resolves). */
  private writeRbdRecord(record: VolumeRecord): Promise<void> {
    return this.withImage(record.id, (image) => image.metadataSet(RBD_RECORD_KEY, JSON.stringify(record)));
  }

  private metaPath(id: string): string {
    return path.join(this.options.volumeDir, `${id}.json`);
  }

  private imagePath(record: Pick<VolumeRecord, 'id' | 'type'>): string {
    return path.join(record.type === 'ephemeral' ? this.options.ephemeralDir : this.options.volumeDir, `${record.id}.img`);
  }

  /** Remove image then metadata (a crash in between leaves metadata without image: load() copes). */
  private async removeFiles(record: VolumeRecord): Promise<void> {
    if (record.store === 'rbd') {
      await this.options.rbd!.cluster.remove(record.id).catch((err: unknown) => {
        if ((err as { code?: string }).code !== 'ENOENT') throw err;
      });
      return;
    }
    await fs.rm(this.imagePath(record), { force: true });
    await fs.rm(this.metaPath(record.id), { force: true });
  }

  private async kmsCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isKmsError(err)) throw err;
      throw new RuntimeError(`KMS unavailable: ${oneLine(err)}`, 'KMS_UNAVAILABLE', { cause: err });
    }
  }
}

/** What every volume export declares: XTS over a sparse file (no key needed to know it). */
const VOLUME_CAPABILITIES: BlockCapabilities = encryptedCapabilities(fileCapabilities(false), DATA_UNIT);

/** Who a connection belongs to: a process (Unix socket), a host (TCP), or a piped stream. */
/** How long a new connection waits for the lease of a client whose process has exited. */
const DEPARTED_WAIT_MS = 5_000;

/**
 * Wait (briefly) while the other consumers are all local processes that have exited: their leases
 * go as soon as the server reads their connections' end, which a loaded host may do after it reads
 * the next client's request (`qemu-io …; qemu-io …` in a row must not find the first attached).
 */
async function departed(volume: Volume, consumer: string): Promise<void> {
  const deadline = Date.now() + DEPARTED_WAIT_MS;
  const othersGone = () => {
    const others = [...volume.consumers.keys()].filter((c) => c !== consumer);
    return others.length > 0 && others.every((c) => !processAlive(consumerPid(c)));
  };
  while (!volume.record.multiAttach && othersGone() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

function processAlive(pid: number | undefined): boolean {
  if (pid === undefined) return true; // not a local process: it holds its lease until it closes
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

const PID_CONSUMER = /^pid (\d+)$/;
const consumerPid = (consumer: string): number | undefined => {
  const m = PID_CONSUMER.exec(consumer);
  return m ? Number(m[1]) : undefined;
};

function consumerOf(peer: NbdPeer): string {
  if (peer.transport === 'unix') return peer.pid !== undefined ? `pid ${peer.pid}` : 'unix';
  if (peer.transport === 'tcp') return `tcp ${peer.address ?? '?'}`;
  return 'stream';
}

function validateSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < MIN_VOLUME_SIZE || size > MAX_VOLUME_SIZE) {
    throw new UsageError(`volume size must be between 1 MiB and 64 TiB, got ${size} bytes`);
  }
  if (size % DATA_UNIT !== 0) throw new UsageError(`volume size must be a multiple of ${DATA_UNIT} bytes, got ${size}`);
}

/** Time throttled so far, from the limiter's counters. */
function throttledOf(limiter: IoLimiter): VolumeThrottled {
  const c = limiter.counters();
  return { iopsSeconds: c.throttledIopsSeconds, throughputSeconds: c.throttledThroughputSeconds };
}

function isZero(buf: Buffer): boolean {
  // Compare against a zero buffer 64 KiB at a time: memcmp speed, no per-byte JS loop.
  for (let off = 0; off < buf.length; off += ZERO_BLOCK.length) {
    const part = buf.subarray(off, Math.min(off + ZERO_BLOCK.length, buf.length));
    if (!part.equals(ZERO_BLOCK.subarray(0, part.length))) return false;
  }
  return true;
}
const ZERO_BLOCK = Buffer.alloc(64 << 10);


/**
 * An RBD volume's record as read from a shared pool: anything another client could have written
 * there is checked before use; null if it is not a well-formed ebs record of image `id`.
 */
export function parseRbdRecord(id: string, text: string): VolumeRecord | null {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof r !== 'object' || r === null) return null;
  const v = r as Partial<VolumeRecord>;
  const kms = v.kms as Partial<WrappedKeyRecord> | undefined;
  const ok =
    v.format === 1 &&
    v.id === id &&
    v.type === 'ebs' &&
    v.store === 'rbd' &&
    Number.isSafeInteger(v.size) &&
    (v.size as number) >= MIN_VOLUME_SIZE &&
    (v.size as number) <= MAX_VOLUME_SIZE &&
    (v.name === undefined || (typeof v.name === 'string' && v.name.length <= 128)) &&
    typeof v.createdAt === 'string' &&
    typeof v.multiAttach === 'boolean' &&
    v.cipher === 'aes-256-xts' &&
    (v.dataUnitSize === 512 || v.dataUnitSize === 4096) &&
    (v.size as number) % (v.dataUnitSize as number) === 0 &&
    typeof kms === 'object' &&
    kms !== null &&
    typeof kms.keyId === 'string' &&
    Number.isSafeInteger(kms.keyVersion) &&
    typeof kms.wrappedKey === 'string' &&
    v.handover === undefined &&
    (v.performance === undefined || validPerformance(v.performance));
  if (!ok) return null;
  return {
    format: 1,
    id,
    ...(v.name !== undefined ? { name: v.name } : {}),
    type: 'ebs',
    size: v.size!,
    createdAt: v.createdAt!,
    multiAttach: v.multiAttach!,
    cipher: 'aes-256-xts',
    dataUnitSize: v.dataUnitSize!,
    store: 'rbd',
    kms: { keyId: kms.keyId!, keyVersion: kms.keyVersion!, wrappedKey: kms.wrappedKey! },
    ...(v.performance !== undefined ? { performance: v.performance } : {}),
  };
}

/** A lock on an image as the API shows it (the cookie is the holder's host id). */
function holderOf(locker: RbdLocker): VolumeHolder {
  return { host: locker.cookie, client: locker.client, address: locker.address };
}

/** A holder as refusals name it. */
export function describeHolder(h: VolumeHolder): string {
  return `host ${h.host} (Ceph ${h.client} at ${h.address})`;
}

/** A snapshot record read from an image's metadata (null if missing or not for this snapshot). */
function parseSnapshotRecord(volumeId: string, id: string, text: string | null): SnapshotInfo | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as Partial<SnapshotInfo>;
    if (v.id !== id || v.volumeId !== volumeId || typeof v.size !== 'number' || typeof v.createdAt !== 'string') return null;
    return { id, volumeId, name: typeof v.name === 'string' ? v.name : null, size: v.size, createdAt: v.createdAt };
  } catch {
    return null;
  }
}

/** The `id` a record names, if it parses that far. */
function recordIdOf(text: string): string | undefined {
  try {
    const id = (JSON.parse(text) as { id?: unknown }).id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

/** A stored performance record: every field present, each within the API's bounds, consistent. */
function validPerformance(p: unknown): p is VolumePerformance {
  const parsed = Performance.safeParse(p);
  if (!parsed.success || Object.keys(UNLIMITED).some((k) => !(k in parsed.data))) return false;
  try {
    mergePerformance(parsed.data as VolumePerformance, {});
    return true;
  } catch {
    return false;
  }
}
