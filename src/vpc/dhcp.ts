/**
 * The VPC's DHCP server (RFC 2131), one virtual server per subnet at the router address
 * (subnet base + 1), answering only the guest behind each ENI, which always gets its fixed
 * private address: there is no pool, so there are no lease records either.
 *
 * Messages:
 * - DISCOVER → OFFER.
 * - REQUEST (§4.3.2): SELECTING (server id present: ours → ACK/NAK on the requested address,
 *   another server's → silence), INIT-REBOOT (requested address, no server id) and
 *   RENEWING/REBINDING (ciaddr) → ACK if the address is the ENI's, NAK otherwise.
 * - INFORM → ACK without lease options and with yiaddr 0 (§4.3.5).
 * - RELEASE, DECLINE → nothing (counted: a DECLINE means the guest saw its address in use).
 *
 * Options sent in OFFER/ACK, whatever the parameter request list asks (servers may send
 * more; the MTU must reach clients that do not ask for it): 53, 54 (router), 51/58/59 (not
 * for INFORM), 1, 3 (router), 6 (only if DNS servers are configured), 15 (if configured),
 * 26 (interface MTU, from the daemon's underlay overhead), 61 echoed (RFC 6842).
 *
 * Reply addressing (always from the gateway MAC and the router address, port 67 → 68):
 * NAK → broadcast (§4.1). Otherwise broadcast (ff:ff:ff:ff:ff:ff, 255.255.255.255) when the
 * client sets the broadcast flag or has no address yet (ciaddr 0), else unicast to ciaddr at
 * the ENI's MAC. RFC 2131 would unicast to yiaddr when ciaddr is 0 and the flag is clear; we
 * broadcast instead, which every client accepts, and it leaks nothing: the reply is written to
 * this one ENI's netdev, never to a shared segment.
 *
 * Everything from the guest is checked: Ethernet source and chaddr must be the ENI's MAC, the
 * IP source 0.0.0.0 or the ENI's address, the destination broadcast or the router, ports
 * 68 → 67, op BOOTREQUEST, htype Ethernet, no relay (giaddr 0), a DHCP message type, and
 * well-formed options. Plain BOOTP is not served.
 */
import { UsageError } from '../common/errors.js';
import {
  BOOTP_OP_REPLY,
  BOOTP_OP_REQUEST,
  BOOTP_FLAG_BROADCAST,
  BROADCAST_MAC,
  DHCP_ACK,
  DHCP_CLIENT_PORT,
  DHCP_DECLINE,
  DHCP_DISCOVER,
  DHCP_INFORM,
  DHCP_NAK,
  DHCP_OFFER,
  DHCP_OPT_CLIENT_ID,
  DHCP_OPT_DNS_SERVERS,
  DHCP_OPT_DOMAIN_NAME,
  DHCP_OPT_INTERFACE_MTU,
  DHCP_OPT_LEASE_TIME,
  DHCP_OPT_MESSAGE,
  DHCP_OPT_MESSAGE_TYPE,
  DHCP_OPT_REBINDING_TIME,
  DHCP_OPT_RENEWAL_TIME,
  DHCP_OPT_REQUESTED_IP,
  DHCP_OPT_ROUTER,
  DHCP_OPT_SERVER_ID,
  DHCP_OPT_SUBNET_MASK,
  DHCP_RELEASE,
  DHCP_REQUEST,
  DHCP_SERVER_PORT,
  GATEWAY_MAC,
} from './constants.js';
import { subnetRouter, type EniEntry } from './model.js';
import {
  IPV4_ANY,
  IPV4_BROADCAST,
  buildDhcp,
  buildUdpFrame,
  dhcpClientMac,
  intToIpv4,
  ipv4Bytes,
  ipv4ToInt,
  parseDhcp,
  parseUdpFrame,
  prefixMask,
  readIpv4,
  type DhcpMessage,
} from './packets.js';

/** What the daemon configures (validated by {@link checkDhcpConfig}). */
export interface DhcpConfig {
  /** DNS servers (option 6), dotted quads; omitted when empty. The VPC resolver is `vpcDnsAddress(vpc)`. */
  dnsServers?: string[];
  /** Search domain (option 15), e.g. `ec2.internal`-like; omitted when absent. */
  domainName?: string;
  /** Lease time (option 51), seconds; default 3600. */
  leaseSeconds?: number;
  /** T1 (option 58); default lease / 2. */
  renewalSeconds?: number;
  /** T2 (option 59); default lease × 7/8. */
  rebindingSeconds?: number;
}

export interface DhcpSettings {
  dnsServers: number[];
  domainName: Buffer | null;
  leaseSeconds: number;
  renewalSeconds: number;
  rebindingSeconds: number;
}

const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** Validate and complete a {@link DhcpConfig}; throws UsageError naming the bad field. */
export function checkDhcpConfig(config: DhcpConfig): DhcpSettings {
  const dnsServers = (config.dnsServers ?? []).map((text) => {
    const ip = ipv4ToInt(text);
    if (ip === null || ip === IPV4_ANY || ip === IPV4_BROADCAST) throw new UsageError(`DNS server '${text}' is not a usable IPv4 address`);
    return ip;
  });
  if (dnsServers.length > 8) throw new UsageError('at most 8 DNS servers');
  let domainName: Buffer | null = null;
  if (config.domainName !== undefined) {
    const name = config.domainName.replace(/\.$/, '');
    if (name.length === 0 || name.length > 253 || !name.split('.').every((l) => LABEL.test(l))) {
      throw new UsageError(`'${config.domainName}' is not a domain name`);
    }
    domainName = Buffer.from(name, 'ascii');
  }
  const leaseSeconds = config.leaseSeconds ?? 3600;
  if (!Number.isInteger(leaseSeconds) || leaseSeconds < 60 || leaseSeconds > 0xfffffffe) throw new UsageError(`DHCP lease time ${leaseSeconds} s is out of range (60-4294967294)`);
  const renewalSeconds = config.renewalSeconds ?? Math.floor(leaseSeconds / 2);
  const rebindingSeconds = config.rebindingSeconds ?? Math.floor((leaseSeconds * 7) / 8);
  if (!Number.isInteger(renewalSeconds) || !Number.isInteger(rebindingSeconds) || !(renewalSeconds > 0 && renewalSeconds < rebindingSeconds && rebindingSeconds < leaseSeconds)) {
    throw new UsageError(`DHCP times must satisfy 0 < renewal (${renewalSeconds}) < rebinding (${rebindingSeconds}) < lease (${leaseSeconds})`);
  }
  return { dnsServers, domainName, leaseSeconds, renewalSeconds, rebindingSeconds };
}

export type DhcpReplyType = 'offer' | 'ack' | 'nak';

export type DhcpDropReason =
  /** Not Ethernet/IPv4/UDP, bad checksum, fragment, bad BOOTP framing or options. */
  | 'malformed'
  /** Not UDP 68 → 67. */
  | 'not-dhcp'
  /** Ethernet source, chaddr or IP source is not the ENI's. */
  | 'spoofed-sender'
  /** IP or Ethernet destination is neither broadcast nor the router. */
  | 'bad-destination'
  /** BOOTREPLY, or a server's message type (OFFER/ACK/NAK) from a guest. */
  | 'unexpected-type'
  /** BOOTP without a DHCP message type. */
  | 'bootp'
  /** giaddr set: there are no relays in a VPC. */
  | 'relayed'
  /** REQUEST for another server (SELECTING with a foreign server id). */
  | 'other-server'
  /** INFORM from an address that is not the ENI's. */
  | 'wrong-address'
  | 'release'
  | 'decline';

export type DhcpAnswer =
  | { reply: Buffer; type: DhcpReplyType; broadcast: boolean; reason?: undefined }
  | { reply: null; reason: DhcpDropReason; type?: undefined; broadcast?: undefined };

/**
 * Answer one DHCP frame from ENI `eni`, whose VPC's MTU is `mtu` (option 26). Pure: the caller
 * writes `reply` to the same ENI.
 */
export function respondToDhcp(frame: Uint8Array, eni: EniEntry, settings: DhcpSettings, mtu: number): DhcpAnswer {
  const parsed = parseUdpFrame(frame);
  if (!parsed) return drop('malformed');
  const { eth, ip, udp } = parsed;
  if (udp.dstPort !== DHCP_SERVER_PORT || udp.srcPort !== DHCP_CLIENT_PORT) return drop('not-dhcp');
  const router = subnetRouter(eni.subnet);
  if (eth.src !== eni.mac) return drop('spoofed-sender');
  if (ip.src !== IPV4_ANY && ip.src !== eni.ip) return drop('spoofed-sender');
  if (ip.dst !== IPV4_BROADCAST && ip.dst !== router) return drop('bad-destination');
  if (eth.dst !== BROADCAST_MAC && eth.dst !== GATEWAY_MAC) return drop('bad-destination');
  const msg = parseDhcp(udp.payload);
  if (!msg) return drop('malformed');
  if (msg.op !== BOOTP_OP_REQUEST) return drop('unexpected-type');
  const clientMac = dhcpClientMac(msg);
  if (clientMac === null) return drop('malformed');
  if (clientMac !== eni.mac) return drop('spoofed-sender');
  if (msg.giaddr !== IPV4_ANY) return drop('relayed');
  if (msg.messageType === null) return drop('bootp');
  const clientId = msg.options.get(DHCP_OPT_CLIENT_ID);
  if (clientId && (clientId.length < 2 || clientId.length > 255)) return drop('malformed');
  const requested = ipOption(msg, DHCP_OPT_REQUESTED_IP);
  const serverId = ipOption(msg, DHCP_OPT_SERVER_ID);
  if (requested === false || serverId === false) return drop('malformed');

  switch (msg.messageType) {
    case DHCP_DISCOVER:
      return reply('offer', msg, eni, settings, mtu, { yiaddr: eni.ip });
    case DHCP_REQUEST: {
      let wanted: number;
      if (serverId !== null) {
        // SELECTING: the client picked an offer; if not ours, stay quiet
        if (serverId !== router) return drop('other-server');
        wanted = requested ?? msg.ciaddr;
      } else if (requested !== null) {
        wanted = requested; // INIT-REBOOT
      } else if (msg.ciaddr !== IPV4_ANY) {
        wanted = msg.ciaddr; // RENEWING / REBINDING
      } else {
        return drop('malformed');
      }
      if (wanted !== eni.ip) return reply('nak', msg, eni, settings, mtu, {});
      return reply('ack', msg, eni, settings, mtu, { yiaddr: eni.ip, ciaddr: msg.ciaddr });
    }
    case DHCP_INFORM:
      if (msg.ciaddr !== eni.ip) return drop('wrong-address');
      return reply('ack', msg, eni, settings, mtu, { ciaddr: msg.ciaddr, inform: true });
    case DHCP_RELEASE:
      return drop('release');
    case DHCP_DECLINE:
      return drop('decline');
    default:
      return drop('unexpected-type');
  }
}

/** Option value as an address: null if absent, false if not 4 bytes. */
function ipOption(msg: DhcpMessage, code: number): number | null | false {
  const value = msg.options.get(code);
  if (!value) return null;
  return value.length === 4 ? readIpv4(value) : false;
}

function reply(
  type: DhcpReplyType,
  req: DhcpMessage,
  eni: EniEntry,
  s: DhcpSettings,
  mtu: number,
  fields: { yiaddr?: number; ciaddr?: number; inform?: boolean },
): DhcpAnswer {
  const router = subnetRouter(eni.subnet);
  const options: Array<[number, Uint8Array]> = [
    [DHCP_OPT_MESSAGE_TYPE, Buffer.from([type === 'offer' ? DHCP_OFFER : type === 'ack' ? DHCP_ACK : DHCP_NAK])],
    [DHCP_OPT_SERVER_ID, ipv4Bytes(router)],
  ];
  if (type === 'nak') {
    options.push([DHCP_OPT_MESSAGE, Buffer.from(`wrong address: this interface has ${intToIpv4(eni.ip)}`, 'ascii')]);
  } else {
    if (!fields.inform) {
      options.push([DHCP_OPT_LEASE_TIME, u32(s.leaseSeconds)], [DHCP_OPT_RENEWAL_TIME, u32(s.renewalSeconds)], [DHCP_OPT_REBINDING_TIME, u32(s.rebindingSeconds)]);
    }
    options.push([DHCP_OPT_SUBNET_MASK, ipv4Bytes(prefixMask(eni.subnet.prefix))], [DHCP_OPT_ROUTER, ipv4Bytes(router)]);
    if (s.dnsServers.length) options.push([DHCP_OPT_DNS_SERVERS, Buffer.concat(s.dnsServers.map(ipv4Bytes))]);
    if (s.domainName) options.push([DHCP_OPT_DOMAIN_NAME, s.domainName]);
    const mtuBytes = Buffer.alloc(2);
    mtuBytes.writeUInt16BE(mtu);
    options.push([DHCP_OPT_INTERFACE_MTU, mtuBytes]);
  }
  const clientId = req.options.get(DHCP_OPT_CLIENT_ID);
  if (clientId) options.push([DHCP_OPT_CLIENT_ID, clientId]);

  const ciaddr = type === 'nak' ? IPV4_ANY : (fields.ciaddr ?? IPV4_ANY);
  const payload = buildDhcp({
    op: BOOTP_OP_REPLY,
    xid: req.xid,
    flags: req.flags & BOOTP_FLAG_BROADCAST,
    ciaddr,
    yiaddr: fields.yiaddr ?? IPV4_ANY,
    chaddr: eni.mac,
    options,
  });
  const broadcast = type === 'nak' || (req.flags & BOOTP_FLAG_BROADCAST) !== 0 || ciaddr === IPV4_ANY;
  const frame = buildUdpFrame({
    srcMac: GATEWAY_MAC,
    dstMac: broadcast ? BROADCAST_MAC : eni.mac,
    srcIp: router,
    dstIp: broadcast ? IPV4_BROADCAST : ciaddr,
    srcPort: DHCP_SERVER_PORT,
    dstPort: DHCP_CLIENT_PORT,
    payload,
  });
  return { reply: frame, type, broadcast };
}

function drop(reason: DhcpDropReason): DhcpAnswer {
  return { reply: null, reason };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** {@link respondToDhcp} with validated settings and counters (replies by type, drops by reason). */
export class DhcpServer {
  readonly settings: DhcpSettings;
  readonly replies: Record<DhcpReplyType, number> = { offer: 0, ack: 0, nak: 0 };
  readonly drops: Record<DhcpDropReason, number> = {
    malformed: 0,
    'not-dhcp': 0,
    'spoofed-sender': 0,
    'bad-destination': 0,
    'unexpected-type': 0,
    bootp: 0,
    relayed: 0,
    'other-server': 0,
    'wrong-address': 0,
    release: 0,
    decline: 0,
  };

  constructor(config: DhcpConfig) {
    this.settings = checkDhcpConfig(config);
  }

  /** The reply frame to write to the ENI's netdev, or null (reason counted). `mtu`: its VPC's. */
  handle(frame: Uint8Array, eni: EniEntry, mtu: number): Buffer | null {
    const answer = respondToDhcp(frame, eni, this.settings, mtu);
    if (answer.reply) this.replies[answer.type]++;
    else this.drops[answer.reason]++;
    return answer.reply;
  }
}
