/**
 * Daemon configuration. Precedence, highest first:
 *   1. command-line flags
 *   2. environment (NITRIDE_STATE_DIR, NITRIDE_SOCKET, NITRIDE_LOG_LEVEL, NITRIDE_KMS_SOCKET,
 *      NITRIDE_NBD_SOCKET, NITRIDE_NBD_LISTEN)
 *   3. the TOML config file (--config FILE, else /etc/nitride/nitride.toml if it exists)
 *   4. built-in defaults
 * Unknown keys in the file are errors: a typo must not silently fall back to a default.
 * The `vpc_*` settings (--vpc-listen, --vpc-dns, --vpc-rekey-after) and `metrics_listen`
 * (--metrics-listen) have no environment variables.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { RuntimeError, UsageError, errnoCode, oneLine } from '../common/errors.js';
import { DEFAULT_CONTROL_SOCKET } from '../api/control.js';
import { LOG_LEVELS, type LogLevel } from '../api/daemon.js';
import { endpointOrNull, parseEndpoint } from '../common/endpoint.js';
import { formatZodError } from '../control/validate.js';
import { DEFAULT_KMS_SOCKET } from '../kms/protocol.js';
import { checkDhcpConfig } from '../vpc/dhcp.js';
import { UNDERLAY_DEFAULT_MTU, UNDERLAY_OVERHEAD_IPV4 } from '../vpc/constants.js';
import { decodeKey } from '../vpc/handshake.js';
import { ENI_ALLOWANCE_QUEUE_US, ENI_MAX_ALLOWANCE_QUEUE_US, PEER_NAME_PATTERN, VPC_MIN_MTU, VPC_POLL_US_DEFAULT, VPC_POLL_US_MAX } from '../api/vpc.js';
import { CT_DEFAULT_MAX_FLOWS } from '../vpc/sg-table.js';
import { parseLoopbackListen } from '../metrics/http-listener.js';
import { DEFAULT_VM_UID_RANGE, parseUidRange } from '../vm/jail.js';
import { cipherImplSettingError } from '../native/addon.js';
import { consoleRotation, DEFAULT_CONSOLE_KEEP, DEFAULT_CONSOLE_MAX_BYTES, type ConsoleRotation } from '../vm/console-log.js';
import { parseSize } from '../common/units.js';
import { run } from '../common/run.js';
import { hostIdOfCertificate } from '../fleet/identity.js';

export const DEFAULT_CONFIG_FILE = '/etc/nitride/nitride.toml';
export const DEFAULT_STATE_DIR = '/var/lib/nitride';
export const DEFAULT_VPC_LISTEN = '0.0.0.0:4789';
/** Session age at which peers rekey (WireGuard's REKEY_AFTER_TIME); the longest allowed too. */
export const DEFAULT_VPC_REKEY_AFTER = 120;
const MIN_VPC_REKEY_AFTER = 2;
/** Bounds of the flows each ENI's security groups may track. */
const MAX_VPC_CONNTRACK = 1 << 24;
const MIN_UNDERLAY_MTU = VPC_MIN_MTU + UNDERLAY_OVERHEAD_IPV4;

/** A file key holding HOST:PORT (numeric: an IP address, not a name). */
const endpointKey = (numeric: boolean) =>
  z.string().refine((text) => endpointOrNull(text, { numeric }) !== null, numeric ? 'must be NUMERIC-HOST:PORT' : 'must be HOST:PORT');

/** The file's schema (snake_case, as operators write TOML). */
const FileSchema = z
  .object({
    state_dir: z.string().min(1).optional(),
    control_socket: z.string().min(1).optional(),
    log_level: z.enum(LOG_LEVELS).optional(),
    kms_socket: z.string().min(1).optional(),
    kms_endpoint: endpointKey(false).optional(),
    kms_public_key: z.string().optional(),
    nbd_socket: z.string().min(1).optional(),
    nbd_listen: endpointKey(false).optional(),
    nbd_data_plane: z.enum(['native', 'js']).optional(),
    ephemeral_dir: z.string().min(1).optional(),
    ephemeral_handover_file: z.boolean().optional(),
    vpc_listen: endpointKey(true).optional(),
    vpc_dns: z.array(z.string()).optional(),
    vpc_rekey_after: z.number().optional(),
    vpc_conntrack_max: z.number().optional(),
    vpc_allowance_queue_us: z.number().optional(),
    vpc_underlay_mtu: z.number().optional(),
    vpc_poll_us: z.number().optional(),
    metrics_listen: endpointKey(true).optional(),
    ceph_conf: z.string().min(1).optional(),
    ceph_pool: z.string().min(1).optional(),
    ceph_id: z.string().min(1).optional(),
    ceph_timeout: z.number().optional(),
    host_id: z.string().optional(),
    ebs_store: z.enum(['rbd', 'local']).optional(),
    vm_uid_range: z.string().optional(),
    vm_console_max: z.string().optional(),
    vm_console_keep: z.number().optional(),
    fleet_endpoints: z.array(z.string()).optional(),
    fleet_ca: z.string().min(1).optional(),
    fleet_cert: z.string().min(1).optional(),
    fleet_key: z.string().min(1).optional(),
  })
  .strict();

/** Effective configuration of a daemon. */
export interface DaemonConfig {
  /** Durable state: volume metadata, audit log, lock. */
  stateDir: string;
  /** Root-only Unix socket of the control API. */
  controlSocket: string;
  logLevel: LogLevel;
  /** The host's KMS, a Unix socket: the host key, and volume data keys unless `kmsEndpoint`. */
  kmsSocket: string;
  /** A network KMS for volume data keys (HOST:PORT), with its pinned public key (base64). */
  kmsEndpoint?: string;
  kmsPublicKey?: string;
  /** The NBD Unix socket serving every volume by name (default: beside the control socket). */
  nbdSocket: string;
  /** Optional NBD TCP listener, HOST:PORT (for the kernel's nbd-client and remote hosts). */
  nbdListen?: string;
  /**
   * Where NBD requests are served: 'native' (default), a thread per connection for aligned reads
   * and writes (src/nbd/connection.ts); 'js', the event loop (for comparison and diagnosis).
   */
  nbdDataPlane: 'native' | 'js';
  /** Where ephemeral volume images live (default: <state dir>/ephemeral). */
  ephemeralDir: string;
  /**
   * Without systemd's fd store only: at a stop, write the KMS-wrapped key of each running VM's
   * ephemeral volume into its metadata for the next start (the pre-fd-store handover). Off by
   * default: it puts a wrapped key in a file.
   */
  ephemeralHandoverFile: boolean;
  /** Underlay UDP bind of the VPC, numeric HOST:PORT (default 0.0.0.0:4789). */
  vpcListen: string;
  /** DNS servers DHCP hands to guests (option 6); none by default. */
  vpcDns: string[];
  /** Seconds after which a peer session is rekeyed (default 120). */
  vpcRekeyAfter: number;
  /** Flows tracked per ENI at most (default CT_DEFAULT_MAX_FLOWS); new flows beyond are dropped. */
  vpcConntrackMax: number;
  /** How long a frame over an ENI's allowance may wait, µs (0: dropped, as ENA does); default ENI_ALLOWANCE_QUEUE_US. */
  vpcAllowanceQueueUs: number;
  /**
   * The MTU of the underlay between hosts (default UNDERLAY_DEFAULT_MTU, 1500): local ENIs may
   * be in VPCs whose MTU plus the encapsulation (UNDERLAY_OVERHEAD_IPV4) fits in it. Checked at
   * start against the interface holding --vpc-listen's address, when it names one.
   */
  vpcUnderlayMtu: number;
  /** The VPC engine worker's longest busy-poll before it sleeps, µs (VPC_POLL_US_DEFAULT; 0: never). */
  vpcPollUs: number;
  /** Optional loopback TCP listener serving GET /metrics, HOST:PORT (never a non-loopback host). */
  metricsListen?: string;
  /** The Ceph cluster holding RBD-backed ebs volumes (absent: local files only). */
  ceph?: CephConfig;
  /** Where `volume create --type ebs` puts a volume without --store (rbd once ceph is set). */
  ebsStore: 'rbd' | 'local';
  /** uids (= gids) for guests' QEMUs, FIRST-LAST, one per running VM (default DEFAULT_VM_UID_RANGE). */
  vmUidRange: string;
  /** Serial console cap per guest (bytes) and old console files kept. */
  vmConsole: ConsoleRotation;
  /** Fleet mode: the etcd cluster holding host records and the VPC model (absent: standalone). */
  fleet?: FleetConfig;
  /** The file the values came from, if any (for status output). */
  configFile?: string;
}

export interface FleetConfig {
  /** etcd client URLs, https://HOST:PORT. */
  endpoints: string[];
  /** PEM files (absolute paths): the CA that signed the members' certificates, this host's client certificate and key. */
  ca: string;
  cert: string;
  key: string;
}

export interface CephConfig {
  /** ceph.conf: mon addresses and the keyring. */
  conf: string;
  /** The pool of the volumes' images (every host of the fleet names the same one). */
  pool: string;
  /** Client id (cephx user without "client."). */
  id: string;
  /** Seconds after which a cluster request fails (EIO to NBD clients). */
  timeoutSeconds: number;
  /** This host's name in the locks of the volumes it attaches (default: the hostname). */
  hostId: string;
}

/** Default cluster request timeout: below a guest's NVMe I/O timeout (30 s). */
export const DEFAULT_CEPH_TIMEOUT = 25;

/** What flags may set; undefined means "not given". */
export type DaemonFlags = Partial<Omit<DaemonConfig, 'configFile' | 'ceph' | 'fleet' | 'vmConsole'>> & {
  vmConsoleMax?: string;
  vmConsoleKeep?: number;
  fleetEndpoints?: string[];
  fleetCa?: string;
  fleetCert?: string;
  fleetKey?: string;
  config?: string;
  cephConf?: string;
  cephPool?: string;
  cephId?: string;
  cephTimeout?: number;
  hostId?: string;
};

export async function loadDaemonConfig(flags: DaemonFlags, env: NodeJS.ProcessEnv = process.env): Promise<DaemonConfig> {
  const explicit = flags.config;
  const fileName = explicit ?? DEFAULT_CONFIG_FILE;
  const file = await readConfigFile(fileName, explicit !== undefined);

  const envLevel = env.NITRIDE_LOG_LEVEL;
  if (envLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(envLevel)) {
    throw new UsageError(`NITRIDE_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const cipherImpl = cipherImplSettingError(env);
  if (cipherImpl !== null) throw new UsageError(cipherImpl);
  const nbdListen = flags.nbdListen ?? env.NITRIDE_NBD_LISTEN ?? file?.nbd_listen;
  if (nbdListen !== undefined) parseEndpoint(nbdListen, '--nbd-listen');
  const vpcListen = flags.vpcListen ?? file?.vpc_listen ?? DEFAULT_VPC_LISTEN;
  parseEndpoint(vpcListen, '--vpc-listen', { numeric: true });
  const vpcDns = flags.vpcDns ?? file?.vpc_dns ?? [];
  try {
    checkDhcpConfig({ dnsServers: vpcDns });
  } catch (err) {
    throw new UsageError(`--vpc-dns: ${oneLine(err)}`);
  }
  const vpcRekeyAfter = flags.vpcRekeyAfter ?? file?.vpc_rekey_after ?? DEFAULT_VPC_REKEY_AFTER;
  if (!Number.isInteger(vpcRekeyAfter) || vpcRekeyAfter < MIN_VPC_REKEY_AFTER || vpcRekeyAfter > DEFAULT_VPC_REKEY_AFTER) {
    throw new UsageError(`--vpc-rekey-after must be whole seconds from ${MIN_VPC_REKEY_AFTER} to ${DEFAULT_VPC_REKEY_AFTER}`);
  }
  const kmsEndpoint = flags.kmsEndpoint ?? file?.kms_endpoint;
  const kmsPublicKey = flags.kmsPublicKey ?? file?.kms_public_key;
  if ((kmsEndpoint === undefined) !== (kmsPublicKey === undefined)) throw new UsageError('--kms-endpoint and --kms-public-key go together (the network KMS is pinned by its key)');
  if (kmsEndpoint !== undefined) parseEndpoint(kmsEndpoint, '--kms-endpoint');
  if (kmsPublicKey !== undefined) decodeKey(kmsPublicKey, '--kms-public-key');
  const vpcConntrackMax = flags.vpcConntrackMax ?? file?.vpc_conntrack_max ?? CT_DEFAULT_MAX_FLOWS;
  if (!Number.isInteger(vpcConntrackMax) || vpcConntrackMax < 1 || vpcConntrackMax > MAX_VPC_CONNTRACK) {
    throw new UsageError(`--vpc-conntrack-max must be a whole number of flows from 1 to ${MAX_VPC_CONNTRACK}`);
  }
  const vpcAllowanceQueueUs = flags.vpcAllowanceQueueUs ?? file?.vpc_allowance_queue_us ?? ENI_ALLOWANCE_QUEUE_US;
  if (!Number.isInteger(vpcAllowanceQueueUs) || vpcAllowanceQueueUs < 0 || vpcAllowanceQueueUs > ENI_MAX_ALLOWANCE_QUEUE_US) {
    throw new UsageError(`--vpc-allowance-queue-us must be whole microseconds from 0 (drop) to ${ENI_MAX_ALLOWANCE_QUEUE_US}`);
  }
  const vpcUnderlayMtu = flags.vpcUnderlayMtu ?? file?.vpc_underlay_mtu ?? UNDERLAY_DEFAULT_MTU;
  if (!Number.isInteger(vpcUnderlayMtu) || vpcUnderlayMtu < MIN_UNDERLAY_MTU || vpcUnderlayMtu > 65535) {
    throw new UsageError(`--vpc-underlay-mtu must be whole bytes from ${MIN_UNDERLAY_MTU} (a VPC of MTU ${VPC_MIN_MTU} with its encapsulation) to 65535`);
  }
  await checkUnderlayInterface(vpcListen, vpcUnderlayMtu);
  const vpcPollUs = flags.vpcPollUs ?? file?.vpc_poll_us ?? VPC_POLL_US_DEFAULT;
  if (!Number.isInteger(vpcPollUs) || vpcPollUs < 0 || vpcPollUs > VPC_POLL_US_MAX) {
    throw new UsageError(`--vpc-poll-us must be whole microseconds from 0 (never poll) to ${VPC_POLL_US_MAX}`);
  }
  const metricsListen = flags.metricsListen ?? file?.metrics_listen;
  if (metricsListen !== undefined) parseLoopbackListen(metricsListen);
  const stateDir = flags.stateDir ?? env.NITRIDE_STATE_DIR ?? file?.state_dir ?? DEFAULT_STATE_DIR;
  const fleet = fleetConfig(flags, file);
  const fleetHost = fleet && (flags.cephConf ?? file?.ceph_conf) !== undefined ? await fleetHostId(fleet.cert) : undefined;
  const ceph = cephConfig(flags, file, fleetHost);
  const ebsStore = flags.ebsStore ?? file?.ebs_store ?? (ceph ? 'rbd' : 'local');
  if (ebsStore === 'rbd' && !ceph) throw new UsageError('ebs_store = "rbd" needs a Ceph cluster (--ceph-conf)');
  const vmUidRange = flags.vmUidRange ?? file?.vm_uid_range ?? DEFAULT_VM_UID_RANGE;
  parseUidRange(vmUidRange);
  const vmConsole = consoleRotation(parseSize(flags.vmConsoleMax ?? file?.vm_console_max ?? String(DEFAULT_CONSOLE_MAX_BYTES)), flags.vmConsoleKeep ?? file?.vm_console_keep ?? DEFAULT_CONSOLE_KEEP);
  const controlSocket = flags.controlSocket ?? env.NITRIDE_SOCKET ?? file?.control_socket ?? DEFAULT_CONTROL_SOCKET;
  return {
    stateDir,
    controlSocket,
    logLevel: flags.logLevel ?? (envLevel as LogLevel | undefined) ?? file?.log_level ?? 'info',
    kmsSocket: flags.kmsSocket ?? env.NITRIDE_KMS_SOCKET ?? file?.kms_socket ?? DEFAULT_KMS_SOCKET,
    ...(kmsEndpoint !== undefined && kmsPublicKey !== undefined ? { kmsEndpoint, kmsPublicKey } : {}),
    nbdSocket: flags.nbdSocket ?? env.NITRIDE_NBD_SOCKET ?? file?.nbd_socket ?? path.join(path.dirname(controlSocket), 'nbd.sock'),
    ...(nbdListen !== undefined ? { nbdListen } : {}),
    nbdDataPlane: flags.nbdDataPlane ?? file?.nbd_data_plane ?? 'native',
    ephemeralDir: flags.ephemeralDir ?? file?.ephemeral_dir ?? path.join(stateDir, 'ephemeral'),
    ephemeralHandoverFile: flags.ephemeralHandoverFile ?? file?.ephemeral_handover_file ?? false,
    vpcListen,
    vpcDns,
    vpcRekeyAfter,
    vpcConntrackMax,
    vpcAllowanceQueueUs,
    vpcUnderlayMtu,
    vpcPollUs,
    ...(metricsListen !== undefined ? { metricsListen } : {}),
    ...(ceph ? { ceph } : {}),
    ebsStore,
    vmUidRange,
    vmConsole,
    ...(fleet ? { fleet } : {}),
    ...(file ? { configFile: fileName } : {}),
  };
}

/**
 * When --vpc-listen names an address, the interface holding it must carry --vpc-underlay-mtu:
 * a larger setting would let VPCs' frames be fragmented or dropped at the first hop.
 */
async function checkUnderlayInterface(listen: string, mtu: number): Promise<void> {
  const { host } = parseEndpoint(listen, '--vpc-listen', { numeric: true });
  if (host === '0.0.0.0' || host === '::') return;
  const addr = await run('ip', ['-o', 'addr', 'show', 'to', host]);
  const ifname = addr.code === 0 ? /^\d+:\s+([^\s:@]+)/.exec(addr.out)?.[1] : undefined;
  if (!ifname) return; // not an address here: binding it fails with its own error
  const link = await run('ip', ['-o', 'link', 'show', 'dev', ifname]);
  const ifMtu = Number(/ mtu (\d+)/.exec(link.out)?.[1] ?? NaN);
  if (ifMtu < mtu) throw new UsageError(`--vpc-underlay-mtu ${mtu} is more than the MTU ${ifMtu} of ${ifname}, which holds --vpc-listen's address ${host}`);
}

/** In fleet mode the host has one name: its certificate's CN (see src/fleet/identity.ts). */
async function fleetHostId(cert: string): Promise<string> {
  let pem: Buffer;
  try {
    pem = await fs.readFile(cert);
  } catch (err) {
    throw new UsageError(`cannot read --fleet-cert ${cert}: ${oneLine(err)}`);
  }
  return hostIdOfCertificate(pem, cert);
}

function cephConfig(flags: DaemonFlags, file: z.infer<typeof FileSchema> | undefined, fleetHost: string | undefined): CephConfig | undefined {
  const conf = flags.cephConf ?? file?.ceph_conf;
  const pool = flags.cephPool ?? file?.ceph_pool;
  const id = flags.cephId ?? file?.ceph_id;
  const timeoutSeconds = flags.cephTimeout ?? file?.ceph_timeout ?? DEFAULT_CEPH_TIMEOUT;
  if (conf === undefined) {
    if (pool !== undefined || id !== undefined) throw new UsageError('--ceph-pool and --ceph-id need --ceph-conf');
    return undefined;
  }
  if (!path.isAbsolute(conf)) throw new UsageError(`--ceph-conf must be an absolute path, got ${conf}`);
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 1 || timeoutSeconds > 300) throw new UsageError('--ceph-timeout must be whole seconds from 1 to 300');
  const hostId = flags.hostId ?? file?.host_id ?? fleetHost ?? os.hostname().split('.')[0]!;
  if (fleetHost !== undefined && hostId !== fleetHost) {
    throw new UsageError(`--host-id '${hostId}' differs from the fleet certificate's CN '${fleetHost}': a host has one name (leave --host-id out in fleet mode)`);
  }
  if (!PEER_NAME_PATTERN.test(hostId)) throw new UsageError(`--host-id '${hostId}' must be 1-63 letters, digits, . _ - (starting with a letter or digit)`);
  return { conf, pool: pool ?? 'rbd', id: id ?? 'admin', timeoutSeconds, hostId };
}

function fleetConfig(flags: DaemonFlags, file: z.infer<typeof FileSchema> | undefined): FleetConfig | undefined {
  const endpoints = flags.fleetEndpoints ?? file?.fleet_endpoints;
  const files = { ca: flags.fleetCa ?? file?.fleet_ca, cert: flags.fleetCert ?? file?.fleet_cert, key: flags.fleetKey ?? file?.fleet_key };
  if (endpoints === undefined) {
    if (Object.values(files).some((f) => f !== undefined)) throw new UsageError('--fleet-ca, --fleet-cert and --fleet-key need --fleet-endpoints');
    return undefined;
  }
  if (endpoints.length === 0) throw new UsageError('--fleet-endpoints needs at least one URL');
  for (const url of endpoints) {
    const m = /^https:\/\/([^/]+)\/?$/.exec(url);
    if (!m || endpointOrNull(m[1]!) === null) throw new UsageError(`--fleet-endpoints: '${url}' is not https://HOST:PORT (etcd is reached over TLS only)`);
  }
  for (const [name, f] of Object.entries(files)) {
    if (f === undefined) throw new UsageError(`--fleet-endpoints needs --fleet-${name} (etcd is reached with a client certificate)`);
    if (!path.isAbsolute(f)) throw new UsageError(`--fleet-${name} must be an absolute path, got ${f}`);
  }
  return { endpoints, ca: files.ca!, cert: files.cert!, key: files.key! };
}

async function readConfigFile(fileName: string, required: boolean): Promise<z.infer<typeof FileSchema> | undefined> {
  let text: string;
  try {
    text = await fs.readFile(fileName, 'utf8');
  } catch (err) {
    if (!required && errnoCode(err) === 'ENOENT') return undefined;
    throw new RuntimeError(`cannot read config file ${fileName}: ${oneLine(err)}`, 'CONFIG');
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new UsageError(`config file ${fileName} is not valid TOML: ${oneLine(err)}`, 'CONFIG');
  }
  const parsed = FileSchema.safeParse(raw);
  if (!parsed.success) throw new UsageError(`config file ${fileName}: ${formatZodError(parsed.error)}`, 'CONFIG');
  return parsed.data;
}
