/**
 * The VPC: /v1/vpcs, /v1/subnets, /v1/enis, /v1/peers, /v1/vpc/stats (the host key: keys.ts).
 *
 *     POST   /v1/vpcs                 CreateVpcRequest      → 201 VpcRecord
 *     GET    /v1/vpcs                                       → VpcRecord[]
 *     DELETE /v1/vpcs/:id                                   → Deleted
 *     POST   /v1/subnets              CreateSubnetRequest   → 201 SubnetRecord
 *     GET    /v1/subnets?vpcId=…                            → SubnetInfo[]
 *     DELETE /v1/subnets/:id                                → Deleted
 *     POST   /v1/enis                 CreateEniRequest      → 201 EniInfo
 *     GET    /v1/enis                                       → EniInfo[]
 *     GET    /v1/enis/:id                                   → EniInfo
 *     PATCH  /v1/enis/:id             ModifyEniRequest      → EniInfo
 *     DELETE /v1/enis/:id                                   → Deleted
 *     POST   /v1/peers                AddPeerRequest        → 201 PeerInfo
 *     GET    /v1/peers                                      → PeerInfo[]
 *     DELETE /v1/peers/:id            (peer name)           → DeletedPeer
 *     GET    /v1/vpc/stats                                  → VpcStatsReply (503 while the VPC is down)
 */

export const VPC_API = {
  vpcs: '/v1/vpcs',
  vpc: '/v1/vpcs/:id',
  subnets: '/v1/subnets',
  subnet: '/v1/subnets/:id',
  enis: '/v1/enis',
  eni: '/v1/enis/:id',
  peers: '/v1/peers',
  peer: '/v1/peers/:id',
  stats: '/v1/vpc/stats',
} as const;

/** The host id of ENIs on this daemon (a remote ENI names the peer hosting it instead). */
export const LOCAL_HOST_ID = 'local';
/** Peer names (what a remote ENI's hostId refers to). */
export const PEER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export type EniKind = 'tap' | 'veth';
type PeerSession = 'established' | 'handshaking' | 'none' | 'unknown';

/**
 * A VPC's guest MTU (DHCP option 26). The default fits a 1500-byte underlay: 1500 − IPv4+UDP 28
 * − data overhead 32 (header 16, tag 16) − Ethernet 14 = 1426 at most; 1420, as WireGuard's,
 * leaves 6 bytes spare. The largest is AWS's jumbo MTU inside a VPC, for underlays that carry
 * jumbo frames (9075 bytes and up); the smallest is IPv6's minimum link MTU.
 */
export const VPC_DEFAULT_MTU = 1420;
export const VPC_MAX_MTU = 9001;
export const VPC_MIN_MTU = 1280;

export interface CreateVpcRequest {
  cidr: string;
  /** Explicit id, to use the same id on every host. */
  id?: string;
  name?: string;
  /**
   * The guests' MTU, VPC_MIN_MTU to VPC_MAX_MTU; default VPC_DEFAULT_MTU. Fixed at creation.
   * Every host with an ENI of the VPC needs an underlay that carries it (`--vpc-underlay-mtu`).
   */
  mtu?: number;
}

export interface VpcRecord {
  id: string;
  cidr: string;
  name?: string;
  /** Absent: VPC_DEFAULT_MTU (records from before per-VPC MTUs, and VPCs created without one). */
  mtu?: number;
}

export interface CreateSubnetRequest {
  vpcId: string;
  cidr: string;
  id?: string;
  name?: string;
}

export interface SubnetRecord {
  id: string;
  vpcId: string;
  cidr: string;
  name?: string;
}

export interface ListSubnetsQuery {
  /** Only this VPC's subnets. */
  vpcId?: string;
}

export interface SubnetInfo extends SubnetRecord {
  /** Addresses still free for ENIs. */
  available: number;
}

/**
 * An ENI's allowances (ENA's): `bandwidth` in bits/s and `pps` in packets/s, each applied
 * separately to traffic into the guest and out of it; a GSO super-frame counts as its segments.
 * A frame over an allowance is counted (bwIn/bwOut/ppsAllowanceExceeded: queued or dropped, as
 * ENA counts) and waits for its tokens up to ENI_ALLOWANCE_QUEUE_US, else is dropped.
 */
export const ENI_MIN_BANDWIDTH = 1000;
export const ENI_MAX_BANDWIDTH = 1e12;
export const ENI_MAX_PPS = 1e9;
/**
 * Depth of an allowance's token bucket, in seconds of its rate (at least one 64 KiB super-frame,
 * 64 packets): what passes at once after idling. Measured (iperf3 TCP between two guests of one
 * host at a 200 Mbit/s limit): goodput is about rate × depth / 200 ms up to a depth of 200 ms
 * (10 ms: 14 Mbit/s, 50 ms: 58, 100 ms: 100, 200 ms: 190, 300 ms: 198), because at the µs RTTs
 * of a host a drop costs TCP a retransmission timeout (200 ms at least), and the bucket must
 * carry the rate across it. See the README (ENI allowances).
 */
export const ENI_ALLOWANCE_DEPTH_SECONDS = 0.3;
/**
 * How long a frame over an ENI's allowance may wait for its tokens (µs) before it is dropped
 * instead (daemon --vpc-allowance-queue-us; 0: dropped at once, as ENA does). See the README
 * (ENI allowances) for the measurement behind the default.
 */
export const ENI_ALLOWANCE_QUEUE_US = 20_000;
export const ENI_MAX_ALLOWANCE_QUEUE_US = 1_000_000;

/**
 * How long the VPC engine's worker busy-polls for the next packet before it sleeps, at most
 * (µs; daemon --vpc-poll-us; 0: it always sleeps). The window adapts to the idle times seen up
 * to this bound (native/src/vpc_poll.h). The default covers the gaps within a burst; a bound
 * above the gaps between a workload's packets keeps the worker polling through them, a core
 * kept busy for the latency of a worker that never sleeps (a dedicated core, as DPDK's polling
 * threads have). See the README (Security groups, ping).
 */
export const VPC_POLL_US_DEFAULT = 200;
export const VPC_POLL_US_MAX = 1_000_000;

export interface CreateEniRequest {
  subnetId: string;
  id?: string;
  mac?: string;
  /** Default: the lowest free address. */
  privateIp?: string;
  /** Default: this daemon ({@link LOCAL_HOST_ID}); a peer name makes a remote ENI record. */
  hostId?: string;
  /** Host-side netdev name (default ni + 8 hex digits of the id). */
  hostInterface?: string;
  kind?: EniKind;
  sourceDestCheck?: boolean;
  description?: string;
  /** 1–5 security groups of the VPC (default: its default group). */
  securityGroups?: string[];
  /** Idle timeout of its established TCP flows, seconds (60 – 432000; default 432000, 5 days, as AWS). */
  tcpEstablishedTimeout?: number;
  /** Bits per second each way (see {@link ENI_MAX_BANDWIDTH}); default unlimited. */
  bandwidth?: number;
  /** Packets per second each way; default unlimited. */
  pps?: number;
}

export interface ModifyEniRequest {
  sourceDestCheck?: boolean;
  /** Fleet mode: the host the ENI moves to (`eni move`); every host follows. */
  hostId?: string;
  description?: string;
  /** Replaces the ENI's groups (1–5); applies to new flows at once, tracked flows continue. */
  securityGroups?: string[];
  /** Applies to its tracked flows at their next packet. */
  tcpEstablishedTimeout?: number;
  /** Applies to the next frame; null removes the limit. */
  bandwidth?: number | null;
  pps?: number | null;
}

export interface EniInfo {
  id: string;
  vpcId: string;
  subnetId: string;
  mac: string;
  privateIp: string;
  sourceDestCheck: boolean;
  /** Host-side netdev (the tap/veth end the daemon opens), unique per host. */
  hostInterface: string;
  /** The guest-side veth name (veth ENIs only). */
  guestInterface: string | null;
  /** {@link LOCAL_HOST_ID} or the peer name hosting it. */
  hostId: string;
  /** Local ENIs only. */
  kind: EniKind | null;
  description?: string;
  securityGroups: string[];
  /** Set when not the default (5 days). */
  tcpEstablishedTimeout?: number;
  /** Set when limited: bits/s and packets/s, each way. */
  bandwidth?: number;
  pps?: number;
}

export interface AddPeerRequest {
  name: string;
  /** Numeric host and UDP port, `198.51.100.7:4789` or `[2001:db8::1]:4789`. */
  endpoint: string;
  publicKey: string;
  /** Send frames unencrypted (for an underlay that is already encrypted). */
  plaintext?: boolean;
}

export interface PeerInfo {
  name: string;
  endpoint: string;
  publicKey: string;
  plaintext: boolean;
  session: PeerSession;
  handshake: unknown;
  lastRx: number | null;
}

export interface DeletedPeer {
  name: string;
  deleted: true;
}

/** The VPC section of the daemon status. */
export interface VpcStatus {
  enabled: boolean;
  state: 'up' | 'down';
  message: string | null;
  listen: string;
  port: number | null;
  publicKey: string | null;
  /** What this host's underlay carries (`--vpc-underlay-mtu`), and the largest VPC MTU it can host ENIs of. */
  underlayMtu: number;
  maxVpcMtu: number;
  vpcs: number;
  subnets: number;
  enis: { total: number; local: number };
  peers: Array<{ name: string; endpoint: string; session: PeerSession }>;
}

/**
 * Counters of one port. rx = read from the guest: a GSO super-frame (guest
 * offloads on) counts once, with its full length. tx = written into the
 * guest, sendFrame included: TCP segments from peers that the engine
 * coalesces into one super-frame count one by one (as received), a
 * super-frame from another local port counts once.
 */
export interface VpcPortStats {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  drops: {
    /** Source check failed. */
    spoofed: number;
    /** Unicast to a MAC with no route (or to a removed port/peer). */
    noRoute: number;
    /** Longer than mtu + 14 (counted on the receiving port for frames towards it). */
    oversize: number;
    /** Punted to onControl (not forwarded); not an error. */
    punted: number;
    /** Punt dropped because JS is behind. */
    puntOverflow: number;
    /** Ethertype other than IPv4/ARP on a source-checked port. */
    filtered: number;
    /** Runt, VLAN-tagged, unparsable headers or unsupported GSO type. */
    invalid: number;
    /** Sending into the guest failed (e.g. its queue is full). */
    txError: number;
    /**
     * Frames from the guest the kernel dropped because the engine's packet
     * socket queue (4 MiB) was full: the engine is behind. Not in rxFrames.
     */
    queueFull: number;
    /** No security group rule or tracked flow allowed it (AWS: silently dropped, REJECT in flow logs). */
    securityGroup: number;
    /** A new flow the connection-tracking table had no room for. */
    conntrackFull: number;
    /** Denied by the subnet's network ACL (checked before the security groups). */
    networkAcl: number;
    /**
     * Frames over the ENI's bandwidth allowance on arrival, into the guest / out of it, queued or
     * dropped (ENA's bw_in/bw_out_allowance_exceeded).
     */
    bwInAllowanceExceeded: number;
    bwOutAllowanceExceeded: number;
    /** Over its packet allowance on arrival, either way, queued or dropped (ENA's pps_allowance_exceeded). */
    ppsAllowanceExceeded: number;
  };
  /** Tracked flows and the limit (0 and 0 on a port without security groups). */
  conntrack: { flows: number; max: number };
}

/** Counters of one peer. Packets/bytes are underlay datagrams. */
export interface VpcPeerStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  drops: {
    /** Authentication failed (wrong key, tampering). */
    badTag: number;
    /** Duplicate counter, or older than the 8128-message window. */
    replay: number;
    /** Nothing to send with (no current session, or it is exhausted), or a data message with an unknown receiver index from this peer. */
    noSession: number;
    /** Plaintext message while this peer is not in plaintext mode. */
    notPlaintext: number;
    /** Received frame for no local port (or for broadcast/multicast). */
    noRoute: number;
    /** Received frame whose source MAC is not routed to this peer. */
    spoofed: number;
  };
  /** Time (ms since the epoch) of the last authenticated message, 0 = none. */
  lastRx: number;
  /** Sessions installed: current, previous and pending ones (0..3). */
  sessions: number;
}

export interface VpcUnderlayStats {
  /** Datagrams from no peer's endpoint (or a known session's index from the wrong address). */
  unknownPeer: number;
  /** Too short, truncated, non-zero reserved bytes. */
  malformed: number;
  /** Handshake datagrams handed to onControl. */
  punted: number;
  puntOverflow: number;
  /** sendmmsg failures (datagrams dropped). */
  txError: number;
}

/** Data-plane counters keyed by ENI id and peer name (what metrics and `vpc stats` read). */
export interface VpcNamedStats {
  enis: Record<string, VpcPortStats>;
  peers: Record<string, VpcPeerStats>;
  underlay: VpcUnderlayStats;
  /** The engine worker's busy-polls before sleeping: caught the next packet, ran out (then slept). */
  worker: VpcWorkerStats;
}

/** The engine worker's busy-polls before sleeping (native/src/vpc_poll.h). */
export interface VpcWorkerStats {
  pollsWon: number;
  pollsLost: number;
  /**
   * Which AES-256-GCM the data messages use: "vaes-avx512" (the addon's own,
   * on CPUs with VAES, VPCLMULQDQ and AVX-512) or "openssl" (elsewhere, or
   * with NITRIDE_GCM_IMPL=openssl in the daemon's environment).
   */
  cipher: 'vaes-avx512' | 'openssl';
}

/** The control plane's counters: frames punted from the engine, ARP/DHCP answers and drops, handshake rejects. */
export interface VpcControlStats {
  punts: Record<string, number>;
  arp: { replies: number; drops: Record<string, number> };
  dhcp: { replies: Record<string, number>; drops: Record<string, number> };
  handshake: { rejects: Record<string, number> };
}

/** What `GET /v1/vpc/stats` returns: the data plane's counters and the control plane's. */
export interface VpcStatsReply extends VpcNamedStats {
  control: VpcControlStats;
}
