import { describe, expect, it } from 'vitest';
import {
  DHCP_OPT_CLIENT_ID,
  DHCP_OPT_HOSTNAME,
  DHCP_OPT_MAX_MESSAGE_SIZE,
  DHCP_OPT_PARAMETER_LIST,
  DHCP_OPT_REQUESTED_IP,
  DHCP_OPT_VENDOR_CLASS_ID,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  GATEWAY_MAC,
  IP_PROTO_UDP,
} from '../../src/vpc/constants.js';
import {
  buildArp,
  buildDhcp,
  buildEthernet,
  buildIpv4,
  buildUdp,
  buildUdpFrame,
  cidrContains,
  cidrContainsCidr,
  cidrFirst,
  cidrHasHostBits,
  cidrLast,
  cidrOverlaps,
  cidrSize,
  dhcpClientMac,
  formatCidr,
  formatMac,
  internetChecksum,
  intToIpv4,
  ipv4ToInt,
  isFragment,
  isLocallyAdministeredMac,
  isUnicastMac,
  isZeroMac,
  normalizeMac,
  parseArp,
  parseCidr,
  parseDhcp,
  parseEthernet,
  parseIpv4,
  parseMac,
  parseUdp,
  parseUdpFrame,
  prefixMask,
} from '../../src/vpc/packets.js';
import { ARPING_REQUEST, KERNEL_ARP_REQUEST, UDHCPC_DISCOVER, UDHCPC_DISCOVER_BROADCAST, UDHCPC_REQUEST_SELECTING, hex, prng } from './fixtures.js';

const ip = (s: string): number => ipv4ToInt(s)!;

describe('MAC addresses', () => {
  it('parses, formats and normalises', () => {
    expect(parseMac('02:AB:cd:00:01:ff')).toEqual(Buffer.from([2, 0xab, 0xcd, 0, 1, 0xff]));
    expect(parseMac('02-ab-cd-00-01-ff')).toEqual(Buffer.from([2, 0xab, 0xcd, 0, 1, 0xff]));
    expect(formatMac(Buffer.from([2, 0xab, 0xcd, 0, 1, 0xff]))).toBe('02:ab:cd:00:01:ff');
    expect(normalizeMac('02-AB-CD-00-01-FF')).toBe('02:ab:cd:00:01:ff');
  });

  it('refuses what is not a MAC', () => {
    for (const bad of ['', '02:ab:cd:00:01', '02:ab:cd:00:01:ff:00', '02:ab-cd:00:01:ff', '2:ab:cd:00:01:ff', '02:ab:cd:00:01:fg', '02abcd0001ff', ' 02:ab:cd:00:01:ff']) {
      expect(parseMac(bad), bad).toBeNull();
    }
    expect(parseMac(42 as unknown as string)).toBeNull();
    expect(() => formatMac(Buffer.alloc(5))).toThrow();
  });

  it('classifies unicast, locally administered and zero', () => {
    expect(isUnicastMac('02:00:00:00:00:01')).toBe(true);
    expect(isUnicastMac('01:00:5e:00:00:01')).toBe(false);
    expect(isUnicastMac('ff:ff:ff:ff:ff:ff')).toBe(false);
    expect(isLocallyAdministeredMac('02:00:00:00:00:01')).toBe(true);
    expect(isLocallyAdministeredMac('52:54:00:12:34:56')).toBe(true);
    expect(isLocallyAdministeredMac('00:1a:2b:3c:4d:5e')).toBe(false);
    expect(isZeroMac('00:00:00:00:00:00')).toBe(true);
    expect(isZeroMac(Buffer.alloc(6))).toBe(true);
    expect(isUnicastMac(GATEWAY_MAC) && isLocallyAdministeredMac(GATEWAY_MAC)).toBe(true);
  });
});

describe('IPv4 addresses and CIDR blocks', () => {
  it('converts dotted quads both ways', () => {
    expect(ipv4ToInt('10.0.1.23')).toBe(0x0a000117);
    expect(ipv4ToInt('255.255.255.255')).toBe(0xffffffff);
    expect(ipv4ToInt('0.0.0.0')).toBe(0);
    expect(intToIpv4(0xc0a80101)).toBe('192.168.1.1');
    expect(intToIpv4(-1)).toBe('255.255.255.255');
    for (const s of ['1.2.3.4', '172.31.255.254', '100.64.0.1']) expect(intToIpv4(ipv4ToInt(s)!)).toBe(s);
  });

  it('refuses malformed addresses, including leading zeros', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.-4', '1.2.3.4 ', '0x1.2.3.4', '1..3.4']) {
      expect(ipv4ToInt(bad), bad).toBeNull();
    }
  });

  it('parses CIDR blocks and answers containment and overlap', () => {
    const vpc = parseCidr('10.0.0.0/16')!;
    expect(vpc).toEqual({ network: 0x0a000000, prefix: 16 });
    expect(formatCidr(vpc)).toBe('10.0.0.0/16');
    expect(cidrSize(vpc)).toBe(65536);
    expect(intToIpv4(cidrLast(vpc))).toBe('10.0.255.255');
    expect(cidrContains(vpc, ip('10.0.200.1'))).toBe(true);
    expect(cidrContains(vpc, ip('10.1.0.0'))).toBe(false);
    const a = parseCidr('10.0.1.0/24')!;
    const b = parseCidr('10.0.1.128/25')!;
    const c = parseCidr('10.0.2.0/24')!;
    expect(cidrContainsCidr(vpc, a)).toBe(true);
    expect(cidrContainsCidr(a, vpc)).toBe(false);
    expect(cidrOverlaps(a, b)).toBe(true);
    expect(cidrOverlaps(b, a)).toBe(true);
    expect(cidrOverlaps(a, c)).toBe(false);
    expect(cidrHasHostBits(parseCidr('10.0.0.5/16')!)).toBe(true);
    expect(cidrFirst(parseCidr('10.0.0.5/16')!)).toBe(0x0a000000);
    expect(prefixMask(0)).toBe(0);
    expect(prefixMask(32)).toBe(0xffffffff);
    expect(prefixMask(20)).toBe(0xfffff000);
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/016', '10.0.0/16', '10.0.0.0/16/2', '10.0.0.0/']) {
      expect(parseCidr(bad), bad).toBeNull();
    }
  });
});

describe('Internet checksum', () => {
  it('matches the RFC 1071 worked example', () => {
    // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (one's complement), checksum 220d
    expect(internetChecksum(Buffer.from('0001f203f4f5f6f7', 'hex'))).toBe(0x220d);
  });
  it('handles odd lengths (pads with a zero byte)', () => {
    expect(internetChecksum(Buffer.from([0x01]))).toBe(internetChecksum(Buffer.from([0x01, 0x00])));
  });
});

describe('Ethernet and ARP against captures', () => {
  it('parses an ARP request from busybox arping and rebuilds it byte for byte', () => {
    const frame = hex(ARPING_REQUEST);
    const eth = parseEthernet(frame)!;
    expect(eth).toMatchObject({ dst: 'ff:ff:ff:ff:ff:ff', src: '52:54:00:12:34:56', etherType: ETHERTYPE_ARP });
    const arp = parseArp(eth.payload)!;
    expect(arp).toEqual({ op: 1, senderMac: '52:54:00:12:34:56', senderIp: ip('10.0.1.23'), targetMac: 'ff:ff:ff:ff:ff:ff', targetIp: ip('10.0.1.42') });
    expect(buildEthernet({ dst: eth.dst, src: eth.src, etherType: eth.etherType, payload: buildArp(arp) })).toEqual(frame);
  });

  it('parses the Linux kernel ARP request (target MAC zero)', () => {
    const arp = parseArp(parseEthernet(hex(KERNEL_ARP_REQUEST))!.payload)!;
    expect(arp.targetMac).toBe('00:00:00:00:00:00');
    expect(intToIpv4(arp.targetIp)).toBe('10.0.1.1');
  });

  it('accepts ARP with trailing Ethernet padding, refuses other hardware/protocol types', () => {
    const padded = Buffer.concat([hex(ARPING_REQUEST).subarray(14), Buffer.alloc(18)]);
    expect(parseArp(padded)).not.toBeNull();
    const ipv6ish = Buffer.from(hex(ARPING_REQUEST).subarray(14));
    ipv6ish.writeUInt16BE(0x86dd, 2);
    expect(parseArp(ipv6ish)).toBeNull();
    const tokenRing = Buffer.from(hex(ARPING_REQUEST).subarray(14));
    tokenRing.writeUInt16BE(6, 0);
    expect(parseArp(tokenRing)).toBeNull();
    const longHw = Buffer.from(hex(ARPING_REQUEST).subarray(14));
    longHw[4] = 8;
    expect(parseArp(longHw)).toBeNull();
  });
});

describe('IPv4/UDP/DHCP against a busybox udhcpc DISCOVER', () => {
  const frame = hex(UDHCPC_DISCOVER);

  it('parses every layer with valid checksums', () => {
    const { eth, ip: ipv4, udp } = parseUdpFrame(frame)!;
    expect(eth.etherType).toBe(ETHERTYPE_IPV4);
    expect(ipv4).toMatchObject({ src: 0, dst: 0xffffffff, protocol: IP_PROTO_UDP, ttl: 64, totalLength: 328, id: 0, dontFragment: false });
    expect(udp).toMatchObject({ srcPort: 68, dstPort: 67 });
    expect(udp.payload.length).toBe(300);
    const dhcp = parseDhcp(udp.payload)!;
    expect(dhcp).toMatchObject({ op: 1, htype: 1, hlen: 6, xid: 0x9a1dc549, flags: 0, ciaddr: 0, yiaddr: 0, giaddr: 0, messageType: 1 });
    expect(dhcpClientMac(dhcp)).toBe('52:54:00:12:34:56');
    expect(dhcp.options.get(DHCP_OPT_HOSTNAME)!.toString()).toBe('guest1');
    expect(dhcp.options.get(DHCP_OPT_VENDOR_CLASS_ID)!.toString()).toBe('nitride-test');
    expect(dhcp.options.get(DHCP_OPT_CLIENT_ID)).toEqual(Buffer.from('01525400123456', 'hex'));
    expect([...dhcp.options.get(DHCP_OPT_PARAMETER_LIST)!]).toEqual([1, 3, 6, 12, 15, 28, 42]);
    expect(dhcp.options.get(DHCP_OPT_MAX_MESSAGE_SIZE)!.readUInt16BE(0)).toBe(576);
  });

  it('rebuilds the IPv4 header and UDP checksum exactly as busybox computed them', () => {
    const { ip: ipv4, udp } = parseUdpFrame(frame)!;
    const rebuiltUdp = buildUdp({ srcPort: 68, dstPort: 67, payload: udp.payload }, 0, 0xffffffff);
    expect(rebuiltUdp.readUInt16BE(6)).toBe(udp.checksum);
    const rebuilt = buildUdpFrame({ srcMac: '52:54:00:12:34:56', dstMac: 'ff:ff:ff:ff:ff:ff', srcIp: 0, dstIp: 0xffffffff, srcPort: 68, dstPort: 67, payload: udp.payload });
    expect(rebuilt).toEqual(frame);
    expect(ipv4.header.readUInt16BE(10)).toBe(0x79a6);
  });

  it('parses the broadcast-flag DISCOVER and the SELECTING REQUEST', () => {
    const b = parseDhcp(parseUdpFrame(hex(UDHCPC_DISCOVER_BROADCAST))!.udp.payload)!;
    expect(b.flags).toBe(0x8000);
    expect(b.options.get(DHCP_OPT_REQUESTED_IP)).toEqual(Buffer.from([10, 0, 1, 23]));
    const r = parseDhcp(parseUdpFrame(hex(UDHCPC_REQUEST_SELECTING))!.udp.payload)!;
    expect(r.messageType).toBe(3);
    expect(r.options.get(54)).toEqual(Buffer.from([10, 0, 1, 1]));
  });

  it('refuses a bad IPv4 header checksum, a bad UDP checksum, and accepts UDP checksum 0', () => {
    const badIp = Buffer.from(frame);
    badIp[14 + 8] = 63; // TTL changed, checksum not
    expect(parseUdpFrame(badIp)).toBeNull();
    expect(parseIpv4(badIp.subarray(14), { verifyChecksum: false })).not.toBeNull();
    const badUdp = Buffer.from(frame);
    badUdp[14 + 20 + 8 + 4]! ^= 0xff; // xid byte
    expect(parseUdpFrame(badUdp)).toBeNull();
    badUdp.writeUInt16BE(0, 14 + 20 + 6); // "no checksum" is allowed over IPv4
    expect(parseUdpFrame(badUdp)).not.toBeNull();
  });

  it('returns null for every truncation', () => {
    for (let n = 0; n < frame.length; n++) expect(parseUdpFrame(frame.subarray(0, n)), `length ${n}`).toBeNull();
    const udpPayload = parseUdpFrame(frame)!.udp.payload;
    for (let n = 0; n < 240; n++) expect(parseDhcp(udpPayload.subarray(0, n))).toBeNull();
  });
});

describe('IPv4 details', () => {
  it('builds headers that parse back, trims link padding, flags fragments', () => {
    const pkt = buildIpv4({ src: ip('10.0.1.23'), dst: ip('10.0.2.9'), protocol: IP_PROTO_UDP, payload: Buffer.from('hello'), id: 7, ttl: 9, dontFragment: true, tos: 0x10 });
    const padded = Buffer.concat([pkt, Buffer.alloc(20)]);
    const p = parseIpv4(padded)!;
    expect(p).toMatchObject({ src: ip('10.0.1.23'), dst: ip('10.0.2.9'), id: 7, ttl: 9, dontFragment: true, moreFragments: false, fragmentOffset: 0, tos: 0x10 });
    expect(p.payload.toString()).toBe('hello');
    expect(p.packet.length).toBe(25);
    expect(isFragment(p)).toBe(false);
    const frag = Buffer.from(pkt);
    frag.writeUInt16BE(0x2000 | 0, 6); // MF
    frag.writeUInt16BE(0, 10);
    frag.writeUInt16BE(internetChecksum(frag.subarray(0, 20)), 10);
    expect(isFragment(parseIpv4(frag)!)).toBe(true);
  });

  it('refuses wrong version, short IHL, impossible lengths and the reserved flag', () => {
    const pkt = buildIpv4({ src: 1, dst: 2, protocol: 17, payload: Buffer.alloc(8) });
    const mutate = (f: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(pkt);
      f(b);
      b.writeUInt16BE(0, 10);
      b.writeUInt16BE(internetChecksum(b.subarray(0, (b[0]! & 15) * 4 || 20)), 10);
      return b;
    };
    expect(parseIpv4(mutate((b) => (b[0] = 0x65)))).toBeNull();
    expect(parseIpv4(mutate((b) => (b[0] = 0x44)))).toBeNull();
    expect(parseIpv4(mutate((b) => b.writeUInt16BE(19, 2)))).toBeNull();
    expect(parseIpv4(mutate((b) => b.writeUInt16BE(29, 2)))).toBeNull();
    expect(parseIpv4(mutate((b) => b.writeUInt16BE(0x8000, 6)))).toBeNull();
    expect(parseIpv4(mutate((b) => b.writeUInt16BE(28, 2)))).not.toBeNull();
  });

  it('UDP: length field bounds the datagram', () => {
    const d = buildUdp({ srcPort: 1, dstPort: 2, payload: Buffer.from('abc') }, 1, 2);
    expect(parseUdp(Buffer.concat([d, Buffer.from('trailing')]), 1, 2)!.payload.toString()).toBe('abc');
    expect(parseUdp(d, 1, 3)).toBeNull(); // pseudo-header covers the addresses
    const short = Buffer.from(d);
    short.writeUInt16BE(7, 4);
    expect(parseUdp(short, 1, 2)).toBeNull();
    const long = Buffer.from(d);
    long.writeUInt16BE(12, 4);
    expect(parseUdp(long, 1, 2)).toBeNull();
  });
});

describe('DHCP building and option framing', () => {
  it('round-trips, pads to 300 bytes, splits and re-joins long options (RFC 3396)', () => {
    const long = Buffer.alloc(600, 0x61);
    const msg = buildDhcp({ op: 2, xid: 0xdeadbeef, flags: 0x8000, yiaddr: ip('10.0.1.23'), chaddr: '02:00:00:00:00:01', options: [[53, Buffer.from([2])], [77, long]] });
    expect(msg.length).toBeGreaterThanOrEqual(300);
    const p = parseDhcp(msg)!;
    expect(p).toMatchObject({ op: 2, xid: 0xdeadbeef, flags: 0x8000, yiaddr: ip('10.0.1.23'), messageType: 2 });
    expect(p.options.get(77)).toEqual(long);
    const small = buildDhcp({ op: 1, xid: 1, chaddr: '02:00:00:00:00:01', options: [[53, Buffer.from([1])]] });
    expect(small.length).toBe(300);
  });

  it('reads options from file and sname with option overload (52)', () => {
    const msg = buildDhcp({ op: 1, xid: 1, chaddr: '02:00:00:00:00:01', options: [[53, Buffer.from([1])], [52, Buffer.from([3])]] });
    Buffer.from([12, 3, 0x61, 0x62, 0x63, 255]).copy(msg, 108); // hostname in 'file'
    Buffer.from([15, 2, 0x78, 0x79, 255]).copy(msg, 44); // domain in 'sname'
    const p = parseDhcp(msg)!;
    expect(p.options.get(12)!.toString()).toBe('abc');
    expect(p.options.get(15)!.toString()).toBe('xy');
    msg[240 + 3 + 2] = 9; // overload value out of range
    expect(parseDhcp(msg)).toBeNull();
  });

  it('refuses a bad cookie, a truncated option, a bad message-type length or hlen', () => {
    const good = buildDhcp({ op: 1, xid: 1, chaddr: '02:00:00:00:00:01', options: [[53, Buffer.from([1])]] });
    const cookie = Buffer.from(good);
    cookie[236] = 0;
    expect(parseDhcp(cookie)).toBeNull();
    const truncated = Buffer.concat([good.subarray(0, 240), Buffer.from([12, 10, 0x61])]);
    expect(parseDhcp(truncated)).toBeNull();
    const mt = buildDhcp({ op: 1, xid: 1, chaddr: '02:00:00:00:00:01', options: [[53, Buffer.from([1, 1])]] });
    expect(parseDhcp(mt)).toBeNull();
    const hlen = Buffer.from(good);
    hlen[2] = 17;
    expect(parseDhcp(hlen)).toBeNull();
    // no END, just runs out: tolerated
    expect(parseDhcp(Buffer.concat([good.subarray(0, 240), Buffer.from([53, 1, 1])]))).toMatchObject({ messageType: 1 });
  });
});

describe('fuzz: parsers never throw', () => {
  const parsers: Array<[string, (b: Buffer) => unknown]> = [
    ['ethernet', parseEthernet],
    ['arp', parseArp],
    ['ipv4', (b) => parseIpv4(b)],
    ['udp', (b) => parseUdp(b, 1, 2)],
    ['dhcp', parseDhcp],
    ['udp frame', parseUdpFrame],
  ];

  it('random bytes of every length up to 600', () => {
    const rand = prng(1);
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.alloc(Math.floor(rand() * 600));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
      for (const [, parse] of parsers) parse(b); // a throw fails the test
    }
  });

  it('captures with random bytes flipped, and structured garbage behind valid headers', () => {
    const rand = prng(2);
    const seeds = [UDHCPC_DISCOVER, UDHCPC_DISCOVER_BROADCAST, UDHCPC_REQUEST_SELECTING, ARPING_REQUEST].map(hex);
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(seeds[i % seeds.length]!);
      const flips = 1 + Math.floor(rand() * 6);
      for (let j = 0; j < flips; j++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      const cut = b.subarray(0, rand() < 0.3 ? Math.floor(rand() * b.length) : b.length);
      for (const [, parse] of parsers) {
        parse(cut);
        parse(cut.subarray(14));
        parse(cut.subarray(42));
      }
    }
  });

  it('non-Buffer inputs return null', () => {
    expect(parseEthernet(new Uint8Array(hex(ARPING_REQUEST)))).not.toBeNull();
    expect(parseEthernet('nope' as unknown as Buffer)).toBeNull();
    expect(parseDhcp(null as unknown as Buffer)).toBeNull();
  });
});
