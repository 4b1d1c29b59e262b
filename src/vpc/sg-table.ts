/**
 * Security-group rules compiled for the data plane. An ENI's groups (the union of their rules,
 * source groups replaced by their members' current addresses) become one flat list of
 * entries — direction, protocol, peer prefix, port (or ICMP type/code) range — that the
 * native engine turns into its classifier (one hash lookup per distinct prefix length, then a
 * binary search over merged ranges: never a scan of the rules). {@link evaluateSg} is the
 * reference semantics the engine's classifier implements, for tests.
 *
 * The conntrack constants are here too: the engine enforces them, the API reports them.
 */
import type { SecurityGroupRecord, SgDirection, SgRule } from '../api/security-groups.js';
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from './constants.js';
import { parseCidr, prefixMask } from './packets.js';

/** Encoded entry: `u8 direction | u8 protocol | u8 prefix | u8 0 | u32 network LE | u16 lo LE | u16 hi LE`. */
export const SG_ENTRY_BYTES = 12;
export const SG_DIR_INGRESS = 0;
export const SG_DIR_EGRESS = 1;
/** Protocol 0 in an entry: every IP protocol, every port. */
export const SG_PROTO_ALL = 0;

// Connection tracking (AWS's timeouts; seconds).
/** Established TCP: AWS's default, 5 days (configurable 60 s – 5 days there). */
export const CT_TCP_ESTABLISHED_S = 432000;
/** The shortest an ENI may set it to. */
export const CT_TCP_ESTABLISHED_MIN_S = 60;
/** A SYN not answered yet. */
export const CT_TCP_HALF_OPEN_S = 30;
/** After a RST, or FINs both ways: stragglers still pass for this long. */
export const CT_TCP_CLOSING_S = 10;
export const CT_UDP_S = 30;
/** UDP once a stream (more than one request and reply). */
export const CT_UDP_STREAM_S = 180;
export const CT_ICMP_S = 30;
/** Flows tracked per ENI unless configured; beyond it new flows are dropped and counted. */
export const CT_DEFAULT_MAX_FLOWS = 65536;

export interface SgEntry {
  direction: typeof SG_DIR_INGRESS | typeof SG_DIR_EGRESS;
  /** IP protocol number, or {@link SG_PROTO_ALL}. */
  protocol: number;
  network: number;
  prefix: number;
  /** tcp/udp: ports; icmp: (type << 8) | code. */
  lo: number;
  hi: number;
}

/** What compiling needs of the model: groups by id, and the addresses of a group's members. */
export interface SgSource {
  group(id: string): SecurityGroupRecord | undefined;
  members(groupId: string): number[];
}

/** The entries of an ENI with these groups (deduplicated, in a stable order). */
export function compileSg(groupIds: readonly string[], source: SgSource): SgEntry[] {
  // Deduplicated per rule shape as numbers: a fleet compiles this on every batch of ENIs, and a
  // default group's rule over 10,000 members made a key string and a pair per member each time.
  const shapes = new Map<string, { direction: SgEntry['direction']; protocol: number; prefix: number; lo: number; hi: number; networks: Set<number> }>();
  const add = (direction: SgEntry['direction'], protocol: number, prefix: number, lo: number, hi: number): Set<number> => {
    const key = `${direction}|${protocol}|${prefix}|${lo}|${hi}`;
    let shape = shapes.get(key);
    if (!shape) shapes.set(key, (shape = { direction, protocol, prefix, lo, hi, networks: new Set() }));
    return shape.networks;
  };
  for (const id of groupIds) {
    const g = source.group(id);
    if (!g) continue;
    for (const [direction, rules] of [
      [SG_DIR_INGRESS, g.ingress],
      [SG_DIR_EGRESS, g.egress],
    ] as const) {
      for (const rule of rules) {
        const [protocol, lo, hi] = ruleRange(rule);
        if (rule.cidr !== undefined) {
          const c = parseCidr(rule.cidr)!;
          add(direction, protocol, c.prefix, lo, hi).add((c.network & prefixMask(c.prefix)) >>> 0);
        } else {
          const networks = add(direction, protocol, 32, lo, hi);
          for (const ip of source.members(rule.sourceGroup!)) networks.add(ip);
        }
      }
    }
  }
  const out: SgEntry[] = [];
  for (const { direction, protocol, prefix, lo, hi, networks } of shapes.values()) for (const network of networks) out.push({ direction, protocol, network, prefix, lo, hi });
  return out.sort((a, b) => a.direction - b.direction || a.protocol - b.protocol || a.prefix - b.prefix || a.network - b.network || a.lo - b.lo || a.hi - b.hi);
}

/** A rule's protocol number and port (or ICMP type/code) range as entries carry them. */
export function ruleRange(rule: Pick<SgRule, 'protocol' | 'fromPort' | 'toPort'>): [number, number, number] {
  switch (rule.protocol) {
    case 'tcp':
      return [IP_PROTO_TCP, rule.fromPort!, rule.toPort!];
    case 'udp':
      return [IP_PROTO_UDP, rule.fromPort!, rule.toPort!];
    case 'icmp': {
      const type = rule.fromPort ?? -1;
      const code = rule.toPort ?? -1;
      if (type < 0) return [IP_PROTO_ICMP, 0, 0xffff];
      if (code < 0) return [IP_PROTO_ICMP, type << 8, (type << 8) | 0xff];
      return [IP_PROTO_ICMP, (type << 8) | code, (type << 8) | code];
    }
    case 'all':
      return [SG_PROTO_ALL, 0, 0xffff];
  }
}

export function encodeSg(entries: readonly SgEntry[]): Buffer {
  const buf = Buffer.alloc(entries.length * SG_ENTRY_BYTES);
  entries.forEach((e, i) => {
    const o = i * SG_ENTRY_BYTES;
    buf[o] = e.direction;
    buf[o + 1] = e.protocol;
    buf[o + 2] = e.prefix;
    buf.writeUInt32LE(e.network >>> 0, o + 4);
    buf.writeUInt16LE(e.lo, o + 8);
    buf.writeUInt16LE(e.hi, o + 10);
  });
  return buf;
}

/** A packet as the classifier sees it: the peer's address and the port (or ICMP type/code) the rule matches. */
export interface SgPacket {
  direction: SgDirection;
  protocol: number;
  /** The remote address: the source of an ingress packet, the destination of an egress one. */
  peer: number;
  /** tcp/udp: the destination port; icmp: (type << 8) | code. */
  port: number;
}

/** Whether a new flow is allowed (reference semantics of the engine's classifier). */
export function evaluateSg(entries: readonly SgEntry[], p: SgPacket): boolean {
  const dir = p.direction === 'ingress' ? SG_DIR_INGRESS : SG_DIR_EGRESS;
  return entries.some(
    (e) =>
      e.direction === dir &&
      (e.protocol === SG_PROTO_ALL || (e.protocol === p.protocol && p.port >= e.lo && p.port <= e.hi)) &&
      ((p.peer & prefixMask(e.prefix)) >>> 0) === e.network,
  );
}
