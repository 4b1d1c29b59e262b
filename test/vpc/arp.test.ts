import { describe, expect, it } from 'vitest';
import { ArpResponder, respondToArp } from '../../src/vpc/arp.js';
import { GATEWAY_MAC } from '../../src/vpc/constants.js';
import { VpcModel, type EniEntry } from '../../src/vpc/model.js';
import { buildArp, buildEthernet, ipv4ToInt, parseArp, parseEthernet } from '../../src/vpc/packets.js';
import { ARPING_DAD_PROBE, ARPING_REQUEST, KERNEL_ARP_REQUEST, hex, prng } from './fixtures.js';

const ip = (s: string): number => ipv4ToInt(s)!;
const GUEST_MAC = '52:54:00:12:34:56';

/** The guest of the captures (52:54:00:12:34:56, 10.0.1.23/24), a neighbour at .42 on another host, one in another subnet, and another VPC with the same addresses. */
function world(): { model: VpcModel; guest: EniEntry; neighbour: EniEntry; far: EniEntry } {
  const model = new VpcModel({ localHostId: 'host-a' });
  const vpcId = model.createVpc({ cidr: '10.0.0.0/16' }).id;
  const subnetId = model.createSubnet({ vpcId, cidr: '10.0.1.0/24' }).id;
  const other = model.createSubnet({ vpcId, cidr: '10.0.2.0/24' }).id;
  const g = model.createEni({ subnetId, mac: GUEST_MAC, privateIp: '10.0.1.23' });
  const n = model.createEni({ subnetId, privateIp: '10.0.1.42', hostId: 'host-b' });
  const f = model.createEni({ subnetId: other, privateIp: '10.0.2.9' });
  const vpc2 = model.createVpc({ cidr: '10.0.0.0/16' }).id;
  const s2 = model.createSubnet({ vpcId: vpc2, cidr: '10.0.1.0/24' }).id;
  model.createEni({ subnetId: s2, privateIp: '10.0.1.77' });
  const t = model.tables;
  return { model, guest: t.lookupById(g.id)!, neighbour: t.lookupById(n.id)!, far: t.lookupById(f.id)! };
}

function request(opts: { senderIp: string; targetIp: string; op?: number; senderMac?: string; ethSrc?: string; ethDst?: string }): Buffer {
  const payload = buildArp({
    op: opts.op ?? 1,
    senderMac: opts.senderMac ?? GUEST_MAC,
    senderIp: ip(opts.senderIp),
    targetMac: '00:00:00:00:00:00',
    targetIp: ip(opts.targetIp),
  });
  return buildEthernet({ dst: opts.ethDst ?? 'ff:ff:ff:ff:ff:ff', src: opts.ethSrc ?? GUEST_MAC, etherType: 0x0806, payload });
}

describe('ARP responder', () => {
  it('answers a busybox arping for a neighbour ENI with its MAC, wherever it is hosted', () => {
    const { model, guest, neighbour } = world();
    const answer = respondToArp(hex(ARPING_REQUEST), guest, model.tables);
    expect(answer.reply).not.toBeNull();
    const eth = parseEthernet(answer.reply!)!;
    expect(eth).toMatchObject({ dst: GUEST_MAC, src: neighbour.mac, etherType: 0x0806 });
    expect(parseArp(eth.payload)).toEqual({ op: 2, senderMac: neighbour.mac, senderIp: ip('10.0.1.42'), targetMac: GUEST_MAC, targetIp: ip('10.0.1.23') });
    expect(answer.reply!.length).toBe(42);
  });

  it('answers the kernel request for the router (+1) and the DNS address (+2) with the gateway MAC', () => {
    const { model, guest } = world();
    const r = respondToArp(hex(KERNEL_ARP_REQUEST), guest, model.tables);
    expect(r.answeredMac).toBe(GATEWAY_MAC);
    const arp = parseArp(parseEthernet(r.reply!)!.payload)!;
    expect(arp).toMatchObject({ op: 2, senderMac: GATEWAY_MAC, senderIp: ip('10.0.1.1') });
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.2' }), guest, model.tables).answeredMac).toBe(GATEWAY_MAC);
  });

  it('answers for an ENI of another subnet of the same VPC, not for another VPC', () => {
    const { model, guest, far } = world();
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.2.9' }), guest, model.tables).answeredMac).toBe(far.mac);
    // 10.0.1.77 exists only in the other VPC
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.77' }), guest, model.tables)).toEqual({ reply: null, reason: 'unknown-target' });
  });

  it('is silent for free, reserved-for-future-use, broadcast and off-VPC addresses', () => {
    const { model, guest } = world();
    for (const target of ['10.0.1.99', '10.0.1.3', '10.0.1.0', '10.0.1.255', '8.8.8.8']) {
      expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: target }), guest, model.tables).reason, target).toBe('unknown-target');
    }
  });

  it('probes (RFC 5227): silence for the own address (DAD passes) and for a free one; a taken one is defended', () => {
    const { model, guest, neighbour } = world();
    expect(respondToArp(hex(ARPING_DAD_PROBE), guest, model.tables).reason).toBe('own-address');
    expect(respondToArp(request({ senderIp: '0.0.0.0', targetIp: '10.0.1.99' }), guest, model.tables).reason).toBe('unknown-target');
    const r = respondToArp(request({ senderIp: '0.0.0.0', targetIp: '10.0.1.42' }), guest, model.tables);
    expect(parseArp(parseEthernet(r.reply!)!.payload)).toEqual({ op: 2, senderMac: neighbour.mac, senderIp: ip('10.0.1.42'), targetMac: GUEST_MAC, targetIp: 0 });
  });

  it('never answers gratuitous ARP (request or reply form) nor replies', () => {
    const { model, guest } = world();
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.23' }), guest, model.tables).reason).toBe('gratuitous');
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.23', op: 2 }), guest, model.tables).reason).toBe('gratuitous');
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.42', op: 2 }), guest, model.tables).reason).toBe('not-request');
  });

  it('drops spoofed senders (Ethernet source, ARP sender MAC or sender IP not the ENI\'s)', () => {
    const { model, guest, neighbour } = world();
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.1', ethSrc: '52:54:00:00:00:01' }), guest, model.tables).reason).toBe('spoofed-sender');
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.1', senderMac: '52:54:00:00:00:01' }), guest, model.tables).reason).toBe('spoofed-sender');
    expect(respondToArp(request({ senderIp: '10.0.1.42', targetIp: '10.0.1.1' }), guest, model.tables).reason).toBe('spoofed-sender');
    // a frame "from" the neighbour arriving on the guest's ENI
    expect(respondToArp(request({ senderIp: '10.0.1.42', targetIp: '10.0.1.1', senderMac: neighbour.mac, ethSrc: neighbour.mac }), guest, model.tables).reason).toBe('spoofed-sender');
  });

  it('accepts unicast refreshes to the answered MAC, refuses other unicast destinations', () => {
    const { model, guest, neighbour } = world();
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.42', ethDst: neighbour.mac }), guest, model.tables).answeredMac).toBe(neighbour.mac);
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.1', ethDst: GATEWAY_MAC }), guest, model.tables).answeredMac).toBe(GATEWAY_MAC);
    expect(respondToArp(request({ senderIp: '10.0.1.23', targetIp: '10.0.1.42', ethDst: '02:00:00:00:00:99' }), guest, model.tables).reason).toBe('bad-destination');
  });

  it('drops malformed frames and never throws on garbage', () => {
    const { model, guest } = world();
    const frame = hex(ARPING_REQUEST);
    for (let n = 0; n < frame.length; n++) expect(respondToArp(frame.subarray(0, n), guest, model.tables).reason).toBe('malformed');
    const ipv4 = Buffer.from(frame);
    ipv4.writeUInt16BE(0x0800, 12);
    expect(respondToArp(ipv4, guest, model.tables).reason).toBe('malformed');
    const rand = prng(3);
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(frame);
      b[14 + Math.floor(rand() * 28)] = Math.floor(rand() * 256);
      respondToArp(b, guest, model.tables);
    }
  });

  it('ArpResponder counts replies and drops by reason', () => {
    const { model, guest } = world();
    const r = new ArpResponder(model.tables);
    expect(r.handle(hex(ARPING_REQUEST), guest)).not.toBeNull();
    expect(r.handle(hex(ARPING_DAD_PROBE), guest)).toBeNull();
    expect(r.handle(Buffer.alloc(3), guest)).toBeNull();
    expect(r.replies).toBe(1);
    expect(r.drops).toMatchObject({ 'own-address': 1, malformed: 1, 'unknown-target': 0 });
  });
});
