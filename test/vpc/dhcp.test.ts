import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/common/errors.js';
import { GATEWAY_MAC } from '../../src/vpc/constants.js';
import { DhcpServer, checkDhcpConfig, respondToDhcp, type DhcpSettings } from '../../src/vpc/dhcp.js';
import { VpcModel, type EniEntry } from '../../src/vpc/model.js';
import { buildDhcp, buildUdpFrame, intToIpv4, ipv4ToInt, parseDhcp, parseUdpFrame, type DhcpMessage } from '../../src/vpc/packets.js';
import { UDHCPC_DISCOVER, UDHCPC_DISCOVER_BROADCAST, UDHCPC_REQUEST_SELECTING, hex, prng } from './fixtures.js';

const ip = (s: string): number => ipv4ToInt(s)!;
const GUEST_MAC = '52:54:00:12:34:56';
const BCAST_MAC = 'ff:ff:ff:ff:ff:ff';

function guest(): EniEntry {
  const model = new VpcModel({ localHostId: 'host-a' });
  const vpcId = model.createVpc({ cidr: '10.0.0.0/16' }).id;
  const subnetId = model.createSubnet({ vpcId, cidr: '10.0.1.0/24' }).id;
  const eni = model.createEni({ subnetId, mac: GUEST_MAC, privateIp: '10.0.1.23' });
  return model.tables.lookupById(eni.id)!;
}

/** The MTU of the guests' VPC. */
const MTU = 1420;
const settings: DhcpSettings = checkDhcpConfig({ dnsServers: ['10.0.0.2'], domainName: 'vpc.internal' });

/** A client message as a frame (from the guest MAC, 0.0.0.0 → broadcast unless told). */
function client(
  type: number,
  opts: { ciaddr?: string; flags?: number; options?: Array<[number, Uint8Array]>; srcIp?: string; dstIp?: string; chaddr?: string; ethSrc?: string; ethDst?: string; giaddr?: string; op?: number; xid?: number } = {},
): Buffer {
  const payload = buildDhcp({
    op: opts.op ?? 1,
    xid: opts.xid ?? 0x01020304,
    flags: opts.flags ?? 0,
    ciaddr: opts.ciaddr ? ip(opts.ciaddr) : 0,
    giaddr: opts.giaddr ? ip(opts.giaddr) : 0,
    chaddr: opts.chaddr ?? GUEST_MAC,
    options: type === 0 ? (opts.options ?? []) : [[53, Buffer.from([type])], ...(opts.options ?? [])],
  });
  return buildUdpFrame({
    srcMac: opts.ethSrc ?? GUEST_MAC,
    dstMac: opts.ethDst ?? BCAST_MAC,
    srcIp: ip(opts.srcIp ?? '0.0.0.0'),
    dstIp: ip(opts.dstIp ?? '255.255.255.255'),
    srcPort: 68,
    dstPort: 67,
    payload,
  });
}

const ipOpt = (s: string): Buffer => Buffer.from(s.split('.').map(Number));

function open(reply: Buffer): { frame: ReturnType<typeof parseUdpFrame> & object; msg: DhcpMessage } {
  const frame = parseUdpFrame(reply)!;
  expect(frame).not.toBeNull();
  return { frame, msg: parseDhcp(frame.udp.payload)! };
}

describe('DHCP server', () => {
  it('answers the busybox DISCOVER with an OFFER carrying the fixed address and every option', () => {
    const a = respondToDhcp(hex(UDHCPC_DISCOVER), guest(), settings, MTU);
    expect(a).toMatchObject({ type: 'offer', broadcast: true });
    const { frame, msg } = open(a.reply!);
    // from the gateway MAC and the router, to broadcast (no address yet)
    expect(frame.eth).toMatchObject({ src: GATEWAY_MAC, dst: BCAST_MAC });
    expect(frame.ip).toMatchObject({ src: ip('10.0.1.1'), dst: 0xffffffff, ttl: 64 });
    expect(frame.udp).toMatchObject({ srcPort: 67, dstPort: 68 });
    expect(msg).toMatchObject({ op: 2, xid: 0x9a1dc549, yiaddr: ip('10.0.1.23'), ciaddr: 0, siaddr: 0, giaddr: 0, flags: 0, messageType: 2 });
    expect(msg.chaddr.subarray(0, 6).toString('hex')).toBe('525400123456');
    const o = msg.options;
    expect(o.get(54)).toEqual(ipOpt('10.0.1.1'));
    expect(o.get(1)).toEqual(ipOpt('255.255.255.0'));
    expect(o.get(3)).toEqual(ipOpt('10.0.1.1'));
    expect(o.get(6)).toEqual(ipOpt('10.0.0.2'));
    expect(o.get(15)!.toString()).toBe('vpc.internal');
    expect(o.get(26)!.readUInt16BE(0)).toBe(1420);
    expect(o.get(51)!.readUInt32BE(0)).toBe(3600);
    expect(o.get(58)!.readUInt32BE(0)).toBe(1800);
    expect(o.get(59)!.readUInt32BE(0)).toBe(3150);
    expect(o.get(61)).toEqual(Buffer.from('01525400123456', 'hex')); // RFC 6842 echo
    // (busybox udhcpc took this exact reply and configured 10.0.1.23/24, router, DNS, domain and MTU 1420)
  });

  it('honours the broadcast flag and ignores a requested address on DISCOVER', () => {
    const a = respondToDhcp(hex(UDHCPC_DISCOVER_BROADCAST), guest(), settings, MTU);
    const { frame, msg } = open(a.reply!);
    expect(msg.flags).toBe(0x8000);
    expect(frame.eth.dst).toBe(BCAST_MAC);
    const other = respondToDhcp(client(1, { options: [[50, ipOpt('10.0.1.99')]] }), guest(), settings, MTU);
    expect(open(other.reply!).msg.yiaddr).toBe(ip('10.0.1.23'));
  });

  it('ACKs the busybox SELECTING REQUEST', () => {
    const a = respondToDhcp(hex(UDHCPC_REQUEST_SELECTING), guest(), settings, MTU);
    expect(a).toMatchObject({ type: 'ack', broadcast: true });
    const { msg } = open(a.reply!);
    expect(msg).toMatchObject({ messageType: 5, yiaddr: ip('10.0.1.23'), xid: 0x9a1dc549 });
    expect(msg.options.get(51)!.readUInt32BE(0)).toBe(3600);
  });

  it('SELECTING for another server: silence; for a wrong address: NAK (broadcast)', () => {
    const e = guest();
    expect(respondToDhcp(client(3, { options: [[50, ipOpt('10.0.1.23')], [54, ipOpt('10.0.1.254')]] }), e, settings, MTU)).toEqual({ reply: null, reason: 'other-server' });
    const nak = respondToDhcp(client(3, { options: [[50, ipOpt('10.0.1.99')], [54, ipOpt('10.0.1.1')]], flags: 0 }), e, settings, MTU);
    expect(nak).toMatchObject({ type: 'nak', broadcast: true });
    const { frame, msg } = open(nak.reply!);
    expect(frame.eth.dst).toBe(BCAST_MAC);
    expect(frame.ip.dst).toBe(0xffffffff);
    expect(msg).toMatchObject({ messageType: 6, yiaddr: 0, ciaddr: 0 });
    expect(msg.options.get(54)).toEqual(ipOpt('10.0.1.1'));
    expect(msg.options.get(56)!.toString()).toBe('wrong address: this interface has 10.0.1.23');
    for (const code of [1, 3, 6, 26, 51]) expect(msg.options.has(code), `option ${code}`).toBe(false);
  });

  it('INIT-REBOOT: ACK for the own address, NAK for any other', () => {
    const e = guest();
    expect(respondToDhcp(client(3, { options: [[50, ipOpt('10.0.1.23')]] }), e, settings, MTU).type).toBe('ack');
    expect(respondToDhcp(client(3, { options: [[50, ipOpt('192.168.1.50')]] }), e, settings, MTU).type).toBe('nak');
  });

  it('RENEWING: unicast ACK to ciaddr at the ENI MAC; NAK when ciaddr is not the ENI\'s', () => {
    const e = guest();
    const renew = respondToDhcp(client(3, { ciaddr: '10.0.1.23', srcIp: '10.0.1.23', dstIp: '10.0.1.1', ethDst: GATEWAY_MAC }), e, settings, MTU);
    expect(renew).toMatchObject({ type: 'ack', broadcast: false });
    const { frame, msg } = open(renew.reply!);
    expect(frame.eth.dst).toBe(GUEST_MAC);
    expect(frame.ip.dst).toBe(ip('10.0.1.23'));
    expect(msg).toMatchObject({ ciaddr: ip('10.0.1.23'), yiaddr: ip('10.0.1.23') });
    // REBINDING (broadcast) with the broadcast flag set: broadcast reply
    const rebind = respondToDhcp(client(3, { ciaddr: '10.0.1.23', srcIp: '10.0.1.23', flags: 0x8000 }), e, settings, MTU);
    expect(rebind).toMatchObject({ type: 'ack', broadcast: true });
    expect(respondToDhcp(client(3, { ciaddr: '10.0.1.24' }), e, settings, MTU).type).toBe('nak');
    // neither server id, requested address nor ciaddr
    expect(respondToDhcp(client(3), e, settings, MTU).reason).toBe('malformed');
  });

  it('INFORM: ACK with configuration but no lease and yiaddr 0, unicast to ciaddr', () => {
    const e = guest();
    const a = respondToDhcp(client(8, { ciaddr: '10.0.1.23', srcIp: '10.0.1.23' }), e, settings, MTU);
    expect(a).toMatchObject({ type: 'ack', broadcast: false });
    const { frame, msg } = open(a.reply!);
    expect(frame.ip.dst).toBe(ip('10.0.1.23'));
    expect(msg).toMatchObject({ messageType: 5, yiaddr: 0, ciaddr: ip('10.0.1.23') });
    expect(msg.options.has(51)).toBe(false);
    expect(msg.options.has(58)).toBe(false);
    expect(msg.options.get(26)!.readUInt16BE(0)).toBe(1420);
    expect(respondToDhcp(client(8, { ciaddr: '10.0.1.50' }), e, settings, MTU).reason).toBe('wrong-address');
  });

  it('ignores RELEASE and DECLINE (counted) and server messages from guests', () => {
    const server = new DhcpServer({});
    const e = guest();
    expect(server.handle(client(7, { ciaddr: '10.0.1.23', srcIp: '10.0.1.23' }), e, MTU)).toBeNull();
    expect(server.handle(client(4, { options: [[50, ipOpt('10.0.1.23')], [54, ipOpt('10.0.1.1')]] }), e, MTU)).toBeNull();
    expect(server.handle(client(2), e, MTU)).toBeNull();
    expect(server.handle(client(5), e, MTU)).toBeNull();
    expect(server.handle(client(1, { op: 2 }), e, MTU)).toBeNull();
    expect(server.handle(hex(UDHCPC_DISCOVER), e, MTU)).not.toBeNull();
    expect(server.replies).toEqual({ offer: 1, ack: 0, nak: 0 });
    expect(server.drops).toMatchObject({ release: 1, decline: 1, 'unexpected-type': 3 });
  });

  it('without DNS servers or a domain, options 6 and 15 are omitted; option 26 is the MTU given (the ENI\'s VPC\'s)', () => {
    const bare = checkDhcpConfig({});
    const { msg } = open(respondToDhcp(hex(UDHCPC_DISCOVER), guest(), bare, 9001).reply!);
    expect(msg.options.has(6)).toBe(false);
    expect(msg.options.has(15)).toBe(false);
    expect(msg.options.get(26)!.readUInt16BE(0)).toBe(9001);
  });

  it('validates everything from the guest', () => {
    const e = guest();
    const r = (f: Buffer): string | undefined => respondToDhcp(f, e, settings, MTU).reason;
    expect(r(client(1, { ethSrc: '52:54:00:00:00:01' }))).toBe('spoofed-sender');
    expect(r(client(1, { chaddr: '52:54:00:00:00:01' }))).toBe('spoofed-sender');
    expect(r(client(1, { srcIp: '10.0.1.50' }))).toBe('spoofed-sender');
    expect(r(client(1, { dstIp: '10.0.1.2' }))).toBe('bad-destination');
    expect(r(client(1, { ethDst: '02:00:00:00:00:09' }))).toBe('bad-destination');
    expect(r(client(1, { giaddr: '10.0.2.1' }))).toBe('relayed');
    expect(r(client(0))).toBe('bootp');
    expect(r(client(3, { options: [[50, Buffer.from([10, 0, 1])]] }))).toBe('malformed');
    expect(r(client(1, { options: [[61, Buffer.from([1])]] }))).toBe('malformed');
    const wrongPorts = buildUdpFrame({ srcMac: GUEST_MAC, dstMac: BCAST_MAC, srcIp: 0, dstIp: 0xffffffff, srcPort: 1234, dstPort: 67, payload: Buffer.alloc(300) });
    expect(r(wrongPorts)).toBe('not-dhcp');
    const garbageDhcp = buildUdpFrame({ srcMac: GUEST_MAC, dstMac: BCAST_MAC, srcIp: 0, dstIp: 0xffffffff, srcPort: 68, dstPort: 67, payload: Buffer.alloc(300) });
    expect(r(garbageDhcp)).toBe('malformed');
    const frame = hex(UDHCPC_DISCOVER);
    for (let n = 0; n < frame.length; n += 7) expect(r(frame.subarray(0, n))).toBe('malformed');
  });

  it('fuzz: never throws on mutated captures', () => {
    const e = guest();
    const rand = prng(4);
    const seeds = [UDHCPC_DISCOVER, UDHCPC_DISCOVER_BROADCAST, UDHCPC_REQUEST_SELECTING].map(hex);
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(seeds[i % 3]!);
      // mutate inside the DHCP payload, then fix the UDP checksum so the DHCP parser sees it
      for (let j = 0, n = 1 + Math.floor(rand() * 8); j < n; j++) b[42 + Math.floor(rand() * 300)] = Math.floor(rand() * 256);
      b.writeUInt16BE(0, 40);
      respondToDhcp(b, e, settings, MTU);
      respondToDhcp(b.subarray(0, Math.floor(rand() * b.length)), e, settings, MTU);
    }
  });

  it('checks its configuration', () => {
    expect(() => checkDhcpConfig({ dnsServers: ['10.0.0.256'] })).toThrow(UsageError);
    expect(() => checkDhcpConfig({ dnsServers: ['10.0.0.256'] })).toThrow(/DNS server/);
    expect(() => checkDhcpConfig({ domainName: 'bad_name.example' })).toThrow(/domain name/);
    expect(() => checkDhcpConfig({ domainName: '-x.example' })).toThrow(/domain name/);
    expect(() => checkDhcpConfig({ leaseSeconds: 10 })).toThrow(/lease/);
    expect(() => checkDhcpConfig({ leaseSeconds: 600, renewalSeconds: 700 })).toThrow(/renewal/);
    const s = checkDhcpConfig({ domainName: 'eu-west-1.compute.internal.', leaseSeconds: 86400 });
    expect(s).toMatchObject({ renewalSeconds: 43200, rebindingSeconds: 75600 });
    expect(s.domainName!.toString()).toBe('eu-west-1.compute.internal');
    expect(intToIpv4(checkDhcpConfig({ dnsServers: ['10.0.0.2', '1.1.1.1'] }).dnsServers[1]!)).toBe('1.1.1.1');
  });
});
