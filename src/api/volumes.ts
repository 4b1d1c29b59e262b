/**
 * Volumes: /v1/volumes…
 *
 *     POST   /v1/volumes                 CreateVolumeRequest    → 201 VolumeInfo
 *     GET    /v1/volumes                                        → VolumeInfo[]
 *     GET    /v1/volumes/:id                                    → VolumeInfo
 *     DELETE /v1/volumes/:id                                    → Deleted
 *     POST   /v1/volumes/:id/resize      ResizeVolumeRequest    → VolumeInfo
 *     POST   /v1/volumes/:id/rewrap      RewrapVolumeRequest    → VolumeInfo
 *     POST   /v1/volumes/:id/modify      ModifyVolumeRequest    → VolumeInfo  (live: within 1 s, no detach)
 *     POST   /v1/volumes/:id/export      VolumeCopyRequest      → stream of CopyProgress, result CopyProgress
 *     POST   /v1/volumes/:id/import      VolumeCopyRequest      → (the same)
 *     POST   /v1/volumes/:id/detach      DetachVolumeRequest    → DetachVolumeResult
 */

export const VOLUMES_API = {
  volumes: '/v1/volumes',
  volume: '/v1/volumes/:id',
  resize: '/v1/volumes/:id/resize',
  rewrap: '/v1/volumes/:id/rewrap',
  modify: '/v1/volumes/:id/modify',
  export: '/v1/volumes/:id/export',
  import: '/v1/volumes/:id/import',
  detach: '/v1/volumes/:id/detach',
} as const;

export type VolumeType = 'ebs' | 'ephemeral';
/** Where an ebs volume lives: a Ceph RBD image (any host of the fleet attaches it) or a local file. */
export type VolumeStore = 'rbd' | 'local';

/** Sizes are whole data units; at least 1 MiB, at most 64 TiB (io2 Block Express). */
export const MIN_VOLUME_SIZE = 1 << 20;
export const MAX_VOLUME_SIZE = 64 * 2 ** 40;

/**
 * I/O counting of the IOPS limits, as EBS counts: an I/O up to this size counts as one, a
 * larger one as ceil(length / this) (shared with the native limiter).
 */
export const IO_COUNT_UNIT_BYTES = 256 * 1024;
/**
 * Depth of a limit's token bucket, in seconds of its rate (at least one I/O): QEMU's throttle
 * default. A burst of that much passes at once after idling; a waiter that wakes late catches up.
 */
export const BUCKET_DEPTH_SECONDS = 0.1;

/** Largest IOPS and throughput a volume may be given (beyond them a limit means nothing here). */
export const MAX_IOPS = 10_000_000;
export const MAX_THROUGHPUT_MIBPS = 1_000_000;
/** Largest burst credit ceilings (I/Os, MiB). */
export const MAX_BURST_CREDITS = 1e12;

/**
 * Provisioned performance, as on EBS (gp3/io2): IOPS (see IO_COUNT_UNIT_BYTES) and throughput
 * in MiB/s, each with an optional gp2-style burst (a higher rate while credits last; credits
 * refill at the provisioned rate up to their ceiling, full at creation). null or absent:
 * unlimited (the default). Enforced per volume, across all its connections.
 */
export interface VolumePerformance {
  iops: number | null;
  throughputMiBps: number | null;
  burstIops: number | null;
  /** Ceiling of the IOPS burst credits, in I/Os. */
  burstIoCredits: number | null;
  burstThroughputMiBps: number | null;
  /** Ceiling of the throughput burst credits, in MiB. */
  burstMiB: number | null;
}

/** Set at create, or changed by modify: absent fields stay as they are, null removes a limit. */
export type PerformanceRequest = Partial<VolumePerformance>;

/** Time throttled (EBS's ebs_volume_performance_exceeded_iops / _tp), seconds since the daemon started. */
export interface VolumeThrottled {
  iopsSeconds: number;
  throughputSeconds: number;
}

export interface CreateVolumeRequest {
  type: VolumeType;
  /** Bytes; required but with `fromSnapshot` (default: the snapshot's size). */
  size?: number;
  name?: string;
  /** KMS key id or alias (ebs); default: the KMS's default key. */
  kmsKeyId?: string;
  /** Several consumers at once (needs a cluster-aware guest file system). */
  multiAttach?: boolean;
  /** ebs only; default: the daemon's ebs_store (rbd when it has a Ceph cluster). */
  store?: VolumeStore;
  /** A copy-on-write clone of this snapshot (rbd); `size`, if given, at least the snapshot's. */
  fromSnapshot?: string;
  /** Default: unlimited. */
  performance?: PerformanceRequest;
}

/** Elastic Volumes: change the provisioned performance while attached. */
export interface ModifyVolumeRequest {
  performance: PerformanceRequest;
}

export interface ResizeVolumeRequest {
  size: number;
}

export interface RewrapVolumeRequest {
  /** Move to this KMS key (default: the newest version of the volume's own key). */
  kmsKeyId?: string;
}

/** Export or import: the raw image file, an absolute path on the daemon's host. */
export interface VolumeCopyRequest {
  path: string;
}

/**
 * Free an rbd volume another host holds. Without `force` it only says who holds it; with
 * `force` the holder is fenced (Ceph blocklists its client: it can never write again) and its
 * lock broken, so any host may attach the volume next.
 */
export interface DetachVolumeRequest {
  force?: boolean;
}

export interface DetachVolumeResult {
  id: string;
  /** The holders fenced and unlocked (empty: nobody held it). */
  fenced: VolumeHolder[];
}

/** Who holds an rbd volume: the lock on its image (one writer across hosts). */
export interface VolumeHolder {
  /** The host id of the daemon that attached it (its --host-id). */
  host: string;
  /** Its Ceph client (`client.4123`) and address (what fencing blocklists). */
  client: string;
  address: string;
}

/** Progress lines of an export or import, and its result. */
export interface CopyProgress {
  done: number;
  total: number;
}

/** What the API shows of a volume. */
export interface VolumeInfo {
  id: string;
  name: string | null;
  type: VolumeType;
  size: number;
  createdAt: string;
  multiAttach: boolean;
  /** Ephemeral volumes are always local. */
  store: VolumeStore;
  encryption: { cipher: string; dataUnitSize: number; kmsKeyId: string | null; keyVersion: number | null };
  state: 'available' | 'in-use';
  attachments: Array<{ consumer: string; connections: number }>;
  /** rbd volumes, in `describe`: the host holding the image's lock, or null (absent: not looked up). */
  holder?: VolumeHolder | null;
  /** NBD URI on the daemon's Unix socket; what qemu-img, nbdinfo and fio take as is. */
  uri: string;
  /** NBD URI on the TCP listener, when one is configured. */
  tcpUri: string | null;
  performance: VolumePerformance;
  throttled: VolumeThrottled;
}
