/**
 * Parse and build the frames the VPC control plane handles: Ethernet II, ARP, IPv4, UDP and
 * DHCPv4, plus MAC, IPv4-address and CIDR helpers.
 *
 * Conventions:
 * - Frames come from untrusted guests. Every `parse…` function returns `null` for anything
 *   malformed, truncated or inconsistent and never throws, whatever the bytes.
 * - Parsed structures hold MAC addresses as canonical strings (`02:ab:…`, lowercase) and IPv4
 *   addresses as unsigned 32-bit integers, so they compare with `===` and key maps.
 * - Parsed payloads are views (`subarray`) into the input, not copies; `build…` functions
 *   return fresh Buffers.
 * - `build…` functions trust their (internal) input; they throw a plain Error on a programming
 *   mistake such as a 7-byte MAC, never on guest data.
 */
import {
  ARP_BYTES,
  ARP_HTYPE_ETHERNET,
  ARP_PTYPE_IPV4,
  BOOTP_FIXED_BYTES,
  BOOTP_MIN_MESSAGE_BYTES,
  DHCP_MAGIC_COOKIE,
  DHCP_MIN_BYTES,
  DHCP_OPT_END,
  DHCP_OPT_MESSAGE_TYPE,
  DHCP_OPT_OVERLOAD,
  DHCP_OPT_PAD,
  ETHERNET_HEADER_BYTES,
  ETHERTYPE_IPV4,
  IPV4_DEFAULT_TTL,
  IPV4_FLAG_DF,
  IPV4_FLAG_MF,
  IPV4_FRAGMENT_OFFSET_MASK,
  IPV4_MIN_HEADER_BYTES,
  IP_PROTO_UDP,
  MAC_BYTES,
  UDP_HEADER_BYTES,
} from './constants.js';

// =============================================================================================
// MAC addresses
// =============================================================================================

const MAC_TEXT = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i;

/** `02:ab:cd:ef:00:01` (or with `-`, any case) → 6 bytes; null if it is not a MAC address. */
export function parseMac(text: string): Buffer | null {
  if (typeof text !== 'string') return null;
  const m = MAC_TEXT.exec(text);
  if (!m) return null;
  return Buffer.from([m[1], m[3], m[4], m[5], m[6], m[7]].join(''), 'hex');
}

/** 6 bytes → canonical `02:ab:cd:ef:00:01`. */
export function formatMac(bytes: Uint8Array): string {
  if (bytes.length !== MAC_BYTES) throw new Error(`a MAC address has 6 bytes, not ${bytes.length}`);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Canonical form of a MAC written by a person (`02-AB-…` → `02:ab:…`), or null. */
export function normalizeMac(text: string): string | null {
  const bytes = parseMac(text);
  return bytes ? formatMac(bytes) : null;
}

/** Canonical MAC string → 6 bytes (throws on a non-canonical string: internal use). */
export function macBytes(mac: string): Buffer {
  const bytes = parseMac(mac);
  if (!bytes) throw new Error(`not a MAC address: ${mac}`);
  return bytes;
}

function firstOctet(mac: string | Uint8Array): number {
  return typeof mac === 'string' ? parseInt(mac.slice(0, 2), 16) : (mac[0] ?? 0);
}

/** Group bit (bit 0 of the first octet) clear: a unicast address. */
export function isUnicastMac(mac: string | Uint8Array): boolean {
  return (firstOctet(mac) & 1) === 0;
}

/** Bit 1 of the first octet set: locally administered (not from a vendor OUI). */
export function isLocallyAdministeredMac(mac: string | Uint8Array): boolean {
  return (firstOctet(mac) & 2) === 2;
}

export function isZeroMac(mac: string | Uint8Array): boolean {
  return typeof mac === 'string' ? mac === '00:00:00:00:00:00' : mac.every((b) => b === 0);
}

// =============================================================================================
// IPv4 addresses and CIDR blocks (addresses as unsigned 32-bit integers)
// =============================================================================================

const IPV4_TEXT = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * Dotted quad → unsigned 32-bit integer; null unless exactly four decimal octets 0–255
 * without leading zeros (`010.0.0.1` is refused: some tools read it as octal).
 */
export function ipv4ToInt(text: string): number | null {
  if (typeof text !== 'string') return null;
  const m = IPV4_TEXT.exec(text);
  if (!m) return null;
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
}

/** Unsigned 32-bit integer → dotted quad. */
export function intToIpv4(n: number): string {
  const v = n >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** 4 bytes at `offset` → unsigned 32-bit integer. */
export function readIpv4(buf: Uint8Array, offset = 0): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

/** Unsigned 32-bit integer → 4 bytes. */
export function ipv4Bytes(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export const IPV4_ANY = 0;
export const IPV4_BROADCAST = 0xffffffff;

/** An IPv4 CIDR block. `network` may have host bits set if parsed so; see {@link cidrHasHostBits}. */
export interface Cidr {
  network: number;
  prefix: number;
}

/** `10.0.0.0/16` → {network, prefix}; null on bad syntax or a prefix outside 0–32. */
export function parseCidr(text: string): Cidr | null {
  if (typeof text !== 'string') return null;
  const slash = text.indexOf('/');
  if (slash < 0) return null;
  const network = ipv4ToInt(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (network === null || !/^(3[0-2]|[12]?\d)$/.test(prefixText)) return null;
  return { network, prefix: Number(prefixText) };
}

export function formatCidr(cidr: Cidr): string {
  return `${intToIpv4(cidr.network)}/${cidr.prefix}`;
}

/** Netmask of a prefix length: 24 → 0xffffff00. */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Whether the address part has bits outside the prefix (`10.0.0.5/16`). */
export function cidrHasHostBits(cidr: Cidr): boolean {
  return (cidr.network & ~prefixMask(cidr.prefix)) >>> 0 !== 0;
}

/** First address (the network address). */
export function cidrFirst(cidr: Cidr): number {
  return (cidr.network & prefixMask(cidr.prefix)) >>> 0;
}

/** Last address (the broadcast address). */
export function cidrLast(cidr: Cidr): number {
  return (cidrFirst(cidr) | ~prefixMask(cidr.prefix)) >>> 0;
}

/** Number of addresses in the block. */
export function cidrSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefix);
}

export function cidrContains(cidr: Cidr, ip: number): boolean {
  return ((ip & prefixMask(cidr.prefix)) >>> 0) === cidrFirst(cidr);
}

/** Whether `inner` lies entirely inside `outer`. */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, cidrFirst(inner));
}

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContainsCidr(a, b) || cidrContainsCidr(b, a);
}

// =============================================================================================
// Internet checksum (RFC 1071)
// =============================================================================================

/** One's-complement sum of 16-bit big-endian words, not yet complemented (for chaining). */
export function onesComplementSum(buf: Uint8Array, initial = 0): number {
  let sum = initial;
  const even = buf.length & ~1;
  for (let i = 0; i < even; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (buf.length & 1) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The Internet checksum of `buf` (with `initial` from a pseudo-header). Verifying: checksum over data including its checksum field is 0. */
export function internetChecksum(buf: Uint8Array, initial = 0): number {
  return ~onesComplementSum(buf, initial) & 0xffff;
}

// =============================================================================================
// Ethernet II
// =============================================================================================

export interface EthernetFrame {
  dst: string;
  src: string;
  etherType: number;
  /** Everything after the 14-byte header (may carry trailing padding: upper layers trim by their own length). */
  payload: Buffer;
}

export function parseEthernet(frame: Uint8Array): EthernetFrame | null {
  if (!(frame instanceof Uint8Array) || frame.length < ETHERNET_HEADER_BYTES) return null;
  const b = asBuffer(frame);
  return {
    dst: formatMac(b.subarray(0, 6)),
    src: formatMac(b.subarray(6, 12)),
    etherType: b.readUInt16BE(12),
    payload: b.subarray(ETHERNET_HEADER_BYTES),
  };
}

/** An Ethernet II frame (no FCS; not padded to 60 bytes: the tap/virtio path does not need it). */
export function buildEthernet(f: { dst: string; src: string; etherType: number; payload: Uint8Array }): Buffer {
  const out = Buffer.alloc(ETHERNET_HEADER_BYTES + f.payload.length);
  macBytes(f.dst).copy(out, 0);
  macBytes(f.src).copy(out, 6);
  out.writeUInt16BE(f.etherType, 12);
  out.set(f.payload, ETHERNET_HEADER_BYTES);
  return out;
}

// =============================================================================================
// ARP (IPv4 over Ethernet only)
// =============================================================================================

export interface ArpPacket {
  op: number;
  senderMac: string;
  senderIp: number;
  targetMac: string;
  targetIp: number;
}

/** Parse an ARP payload (after the Ethernet header); null unless Ethernet/IPv4 with 6/4-byte addresses. */
export function parseArp(payload: Uint8Array): ArpPacket | null {
  if (!(payload instanceof Uint8Array) || payload.length < ARP_BYTES) return null;
  const b = asBuffer(payload);
  if (b.readUInt16BE(0) !== ARP_HTYPE_ETHERNET || b.readUInt16BE(2) !== ARP_PTYPE_IPV4 || b[4] !== 6 || b[5] !== 4) return null;
  return {
    op: b.readUInt16BE(6),
    senderMac: formatMac(b.subarray(8, 14)),
    senderIp: readIpv4(b, 14),
    targetMac: formatMac(b.subarray(18, 24)),
    targetIp: readIpv4(b, 24),
  };
}

export function buildArp(p: ArpPacket): Buffer {
  const out = Buffer.alloc(ARP_BYTES);
  out.writeUInt16BE(ARP_HTYPE_ETHERNET, 0);
  out.writeUInt16BE(ARP_PTYPE_IPV4, 2);
  out[4] = 6;
  out[5] = 4;
  out.writeUInt16BE(p.op, 6);
  macBytes(p.senderMac).copy(out, 8);
  out.writeUInt32BE(p.senderIp >>> 0, 14);
  macBytes(p.targetMac).copy(out, 18);
  out.writeUInt32BE(p.targetIp >>> 0, 24);
  return out;
}

// =============================================================================================
// IPv4
// =============================================================================================

export interface Ipv4Packet {
  tos: number;
  /** Total length from the header (the packet is trimmed to it: link-layer padding dropped). */
  totalLength: number;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In 8-byte units, as on the wire. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  src: number;
  dst: number;
  /** Header options (IHL > 5), possibly empty. */
  options: Buffer;
  /** The whole header (checksum included). */
  header: Buffer;
  payload: Buffer;
  /** The whole packet, `header ‖ payload`. */
  packet: Buffer;
}

/**
 * Parse an IPv4 packet (an Ethernet payload). Null unless version 4, IHL ≥ 5, total length
 * between the header length and the bytes present, and (by default) a correct header checksum.
 */
export function parseIpv4(data: Uint8Array, options: { verifyChecksum?: boolean } = {}): Ipv4Packet | null {
  if (!(data instanceof Uint8Array) || data.length < IPV4_MIN_HEADER_BYTES) return null;
  const b = asBuffer(data);
  const version = b[0]! >>> 4;
  const headerBytes = (b[0]! & 0x0f) * 4;
  if (version !== 4 || headerBytes < IPV4_MIN_HEADER_BYTES) return null;
  const totalLength = b.readUInt16BE(2);
  if (totalLength < headerBytes || totalLength > b.length) return null;
  const header = b.subarray(0, headerBytes);
  if ((options.verifyChecksum ?? true) && internetChecksum(header) !== 0) return null;
  const flagsFragment = b.readUInt16BE(6);
  if (flagsFragment & 0x8000) return null; // the reserved ("evil") bit must be zero
  return {
    tos: b[1]!,
    totalLength,
    id: b.readUInt16BE(4),
    dontFragment: (flagsFragment & IPV4_FLAG_DF) !== 0,
    moreFragments: (flagsFragment & IPV4_FLAG_MF) !== 0,
    fragmentOffset: flagsFragment & IPV4_FRAGMENT_OFFSET_MASK,
    ttl: b[8]!,
    protocol: b[9]!,
    src: readIpv4(b, 12),
    dst: readIpv4(b, 16),
    options: b.subarray(IPV4_MIN_HEADER_BYTES, headerBytes),
    header,
    payload: b.subarray(headerBytes, totalLength),
    packet: b.subarray(0, totalLength),
  };
}

/** Whether the packet is a fragment (not offset 0, or more to come): its payload is not a whole upper-layer message. */
export function isFragment(ip: Pick<Ipv4Packet, 'moreFragments' | 'fragmentOffset'>): boolean {
  return ip.moreFragments || ip.fragmentOffset !== 0;
}

export interface Ipv4Build {
  src: number;
  dst: number;
  protocol: number;
  payload: Uint8Array;
  tos?: number;
  id?: number;
  ttl?: number;
  dontFragment?: boolean;
}

/** An IPv4 packet with a 20-byte header (no options) and its header checksum. */
export function buildIpv4(p: Ipv4Build): Buffer {
  const totalLength = IPV4_MIN_HEADER_BYTES + p.payload.length;
  if (totalLength > 0xffff) throw new Error(`IPv4 packet of ${totalLength} bytes is too long`);
  const out = Buffer.alloc(totalLength);
  out[0] = 0x45;
  out[1] = p.tos ?? 0;
  out.writeUInt16BE(totalLength, 2);
  out.writeUInt16BE(p.id ?? 0, 4);
  out.writeUInt16BE(p.dontFragment ? IPV4_FLAG_DF : 0, 6);
  out[8] = p.ttl ?? IPV4_DEFAULT_TTL;
  out[9] = p.protocol;
  out.writeUInt32BE(p.src >>> 0, 12);
  out.writeUInt32BE(p.dst >>> 0, 16);
  out.writeUInt16BE(internetChecksum(out.subarray(0, IPV4_MIN_HEADER_BYTES)), 10);
  out.set(p.payload, IPV4_MIN_HEADER_BYTES);
  return out;
}

// =============================================================================================
// UDP
// =============================================================================================

export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  /** Checksum field as received (0: the sender did not compute one). */
  checksum: number;
  payload: Buffer;
}

function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  const ph = Buffer.alloc(12);
  ph.writeUInt32BE(src >>> 0, 0);
  ph.writeUInt32BE(dst >>> 0, 4);
  ph[9] = protocol;
  ph.writeUInt16BE(length, 10);
  return onesComplementSum(ph);
}

/**
 * Parse a UDP datagram (an IPv4 payload); `src`/`dst` are the IPv4 addresses for the
 * pseudo-header. Null if shorter than its length field says, or if a non-zero checksum is wrong.
 */
export function parseUdp(segment: Uint8Array, src: number, dst: number): UdpDatagram | null {
  if (!(segment instanceof Uint8Array) || segment.length < UDP_HEADER_BYTES) return null;
  const b = asBuffer(segment);
  const length = b.readUInt16BE(4);
  if (length < UDP_HEADER_BYTES || length > b.length) return null;
  const datagram = b.subarray(0, length);
  const checksum = b.readUInt16BE(6);
  if (checksum !== 0 && internetChecksum(datagram, pseudoHeaderSum(src, dst, IP_PROTO_UDP, length)) !== 0) return null;
  return { srcPort: b.readUInt16BE(0), dstPort: b.readUInt16BE(2), checksum, payload: b.subarray(UDP_HEADER_BYTES, length) };
}

/** A UDP datagram with its checksum over the IPv4 pseudo-header (a computed 0 is sent as 0xffff). */
export function buildUdp(d: { srcPort: number; dstPort: number; payload: Uint8Array }, src: number, dst: number): Buffer {
  const length = UDP_HEADER_BYTES + d.payload.length;
  if (length > 0xffff - IPV4_MIN_HEADER_BYTES) throw new Error(`UDP datagram of ${length} bytes is too long`);
  const out = Buffer.alloc(length);
  out.writeUInt16BE(d.srcPort, 0);
  out.writeUInt16BE(d.dstPort, 2);
  out.writeUInt16BE(length, 4);
  out.set(d.payload, UDP_HEADER_BYTES);
  const sum = internetChecksum(out, pseudoHeaderSum(src, dst, IP_PROTO_UDP, length));
  out.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
  return out;
}

// =============================================================================================
// DHCPv4 (BOOTP fixed part + options)
// =============================================================================================

export interface DhcpMessage {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** The 16-byte chaddr field as received. */
  chaddr: Buffer;
  /** Option 53, or null for plain BOOTP. */
  messageType: number | null;
  /**
   * Options by code. Repeated codes are concatenated (RFC 3396). With option overload (52) the
   * `file` and `sname` fields are parsed as options too (RFC 2132 §9.3).
   */
  options: Map<number, Buffer>;
}

/** Client hardware address as a MAC string when the message says Ethernet (htype 1, hlen 6), else null. */
export function dhcpClientMac(m: DhcpMessage): string | null {
  return m.htype === 1 && m.hlen === 6 ? formatMac(m.chaddr.subarray(0, 6)) : null;
}

/**
 * Parse options from `area` into `into`. Returns false on a truncated option. Stops at END;
 * running off the end of the area without END is tolerated (several clients omit it).
 */
function parseOptionArea(area: Buffer, into: Map<number, Buffer[]>): boolean {
  let i = 0;
  while (i < area.length) {
    const code = area[i]!;
    if (code === DHCP_OPT_END) return true;
    if (code === DHCP_OPT_PAD) {
      i++;
      continue;
    }
    const len = area[i + 1];
    if (len === undefined || i + 2 + len > area.length) return false;
    const list = into.get(code);
    const value = area.subarray(i + 2, i + 2 + len);
    if (list) list.push(value);
    else into.set(code, [value]);
    i += 2 + len;
  }
  return true;
}

/** Parse a DHCP message (a UDP payload). Null unless the fixed part, magic cookie and option framing are intact. */
export function parseDhcp(data: Uint8Array): DhcpMessage | null {
  if (!(data instanceof Uint8Array) || data.length < DHCP_MIN_BYTES) return null;
  const b = asBuffer(data);
  if (b.readUInt32BE(BOOTP_FIXED_BYTES) !== DHCP_MAGIC_COOKIE) return null;
  const hlen = b[2]!;
  if (hlen > 16) return null;
  const raw = new Map<number, Buffer[]>();
  if (!parseOptionArea(b.subarray(DHCP_MIN_BYTES), raw)) return null;
  const overload = raw.get(DHCP_OPT_OVERLOAD);
  if (overload) {
    const value = overload.length === 1 && overload[0]!.length === 1 ? overload[0]![0]! : 0;
    if (value < 1 || value > 3) return null;
    // RFC 2131 §4.1: options field first, then 'file', then 'sname'
    if (value & 1 && !parseOptionArea(b.subarray(108, 236), raw)) return null;
    if (value & 2 && !parseOptionArea(b.subarray(44, 108), raw)) return null;
  }
  const options = new Map<number, Buffer>();
  for (const [code, parts] of raw) options.set(code, parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  const mt = options.get(DHCP_OPT_MESSAGE_TYPE);
  let messageType: number | null = null;
  if (mt) {
    if (mt.length !== 1) return null;
    messageType = mt[0]!;
  }
  return {
    op: b[0]!,
    htype: b[1]!,
    hlen,
    hops: b[3]!,
    xid: b.readUInt32BE(4),
    secs: b.readUInt16BE(8),
    flags: b.readUInt16BE(10),
    ciaddr: readIpv4(b, 12),
    yiaddr: readIpv4(b, 16),
    siaddr: readIpv4(b, 20),
    giaddr: readIpv4(b, 24),
    chaddr: b.subarray(28, 44),
    messageType,
    options,
  };
}

export interface DhcpBuild {
  op: number;
  xid: number;
  secs?: number;
  flags?: number;
  ciaddr?: number;
  yiaddr?: number;
  siaddr?: number;
  giaddr?: number;
  /** Client MAC (htype 1, hlen 6). */
  chaddr: string;
  /** Options in order (without END, which is appended). Values longer than 255 bytes are split (RFC 3396). */
  options: Array<[code: number, value: Uint8Array]>;
}

/** A DHCP message, END-terminated, zero-padded to the 300-byte BOOTP minimum. */
export function buildDhcp(m: DhcpBuild): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of m.options) {
    if (code === DHCP_OPT_PAD || code === DHCP_OPT_END) throw new Error(`option ${code} cannot carry a value`);
    let offset = 0;
    do {
      const chunk = value.subarray(offset, offset + 255);
      parts.push(Buffer.from([code, chunk.length]), Buffer.from(chunk));
      offset += 255;
    } while (offset < value.length);
  }
  parts.push(Buffer.from([DHCP_OPT_END]));
  const optionBytes = Buffer.concat(parts);
  const out = Buffer.alloc(Math.max(BOOTP_MIN_MESSAGE_BYTES, DHCP_MIN_BYTES + optionBytes.length));
  out[0] = m.op;
  out[1] = 1; // Ethernet
  out[2] = 6;
  out[3] = 0;
  out.writeUInt32BE(m.xid >>> 0, 4);
  out.writeUInt16BE(m.secs ?? 0, 8);
  out.writeUInt16BE(m.flags ?? 0, 10);
  out.writeUInt32BE((m.ciaddr ?? 0) >>> 0, 12);
  out.writeUInt32BE((m.yiaddr ?? 0) >>> 0, 16);
  out.writeUInt32BE((m.siaddr ?? 0) >>> 0, 20);
  out.writeUInt32BE((m.giaddr ?? 0) >>> 0, 24);
  macBytes(m.chaddr).copy(out, 28);
  out.writeUInt32BE(DHCP_MAGIC_COOKIE, BOOTP_FIXED_BYTES);
  optionBytes.copy(out, DHCP_MIN_BYTES);
  return out;
}

// =============================================================================================
// Whole frames
// =============================================================================================

/** A UDP/IPv4 Ethernet frame as the guest sees it: the shape of every DHCP packet. */
export interface UdpFrame {
  eth: EthernetFrame;
  ip: Ipv4Packet;
  udp: UdpDatagram;
}

/** Ethernet → IPv4 (checksum verified, not a fragment) → UDP (checksum verified); null at the first failure. */
export function parseUdpFrame(frame: Uint8Array): UdpFrame | null {
  const eth = parseEthernet(frame);
  if (!eth || eth.etherType !== ETHERTYPE_IPV4) return null;
  const ip = parseIpv4(eth.payload);
  if (!ip || ip.protocol !== IP_PROTO_UDP || isFragment(ip)) return null;
  const udp = parseUdp(ip.payload, ip.src, ip.dst);
  if (!udp) return null;
  return { eth, ip, udp };
}

/** Build Ethernet(IPv4(UDP(payload))). */
export function buildUdpFrame(f: {
  srcMac: string;
  dstMac: string;
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
  ttl?: number;
  tos?: number;
}): Buffer {
  const udp = buildUdp({ srcPort: f.srcPort, dstPort: f.dstPort, payload: f.payload }, f.srcIp, f.dstIp);
  const ip = buildIpv4({ src: f.srcIp, dst: f.dstIp, protocol: IP_PROTO_UDP, payload: udp, ttl: f.ttl, tos: f.tos });
  return buildEthernet({ dst: f.dstMac, src: f.srcMac, etherType: ETHERTYPE_IPV4, payload: ip });
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
