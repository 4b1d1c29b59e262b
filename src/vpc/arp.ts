/**
 * The VPC's ARP responder. Guests never see each other's ARP: every request is answered (or
 * not) here, from the ENI directory, as AWS's VPC does (nitro.md §1.5: "ARP is answered by
 * the VPC").
 *
 * For a request from ENI `eni`:
 * - target is the subnet's router (+1) or DNS (+2) address → {@link GATEWAY_MAC};
 * - target is another ENI of the same VPC → that ENI's MAC (wherever it is hosted);
 * - anything else (free or reserved address, another VPC's address, the guest's own address)
 *   → no reply, with the reason counted.
 * Probes (RFC 5227, sender IP 0.0.0.0) get the same answer as a request, addressed to the
 * prober, so a guest probing an address that is taken learns it is taken; probing its own or
 * a free address gets silence, which is what lets the probe succeed. Gratuitous ARP
 * (announcements) and replies from guests are never answered.
 *
 * Source checks (always, whatever sourceDestCheck says: ARP is not forwarded traffic): the
 * Ethernet source and the ARP sender MAC must be the ENI's MAC and the sender IP the ENI's
 * address or 0.0.0.0. Anything else is a spoofing attempt and is dropped.
 */
import { ARP_OP_REPLY, ARP_OP_REQUEST, BROADCAST_MAC, ETHERTYPE_ARP, GATEWAY_MAC } from './constants.js';
import type { EniDirectory, EniEntry } from './model.js';
import { subnetDns, subnetRouter } from './model.js';
import { buildArp, buildEthernet, parseArp, parseEthernet } from './packets.js';

export type ArpDropReason =
  /** Not an Ethernet/ARP frame, or an ARP packet other than IPv4-over-Ethernet. */
  | 'malformed'
  /** Ethernet destination neither broadcast nor a unicast the VPC answers for. */
  | 'bad-destination'
  /** An ARP reply (or another op) from the guest: nothing to answer. */
  | 'not-request'
  /** Ethernet source, ARP sender MAC or sender IP is not the ENI's. */
  | 'spoofed-sender'
  /** Gratuitous ARP / announcement of the guest's own address. */
  | 'gratuitous'
  /** The guest asks for its own address (duplicate-address probe, or a confused stack). */
  | 'own-address'
  /** Target is not an ENI of this VPC nor the router/DNS address: nobody to answer for. */
  | 'unknown-target';

export type ArpAnswer =
  | { reply: Buffer; answeredMac: string; reason?: undefined }
  | { reply: null; reason: ArpDropReason; answeredMac?: undefined };

/** Answer one ARP frame from ENI `eni`. Pure: the caller sends `reply` back to the same ENI. */
export function respondToArp(frame: Uint8Array, eni: EniEntry, directory: EniDirectory): ArpAnswer {
  const eth = parseEthernet(frame);
  if (!eth || eth.etherType !== ETHERTYPE_ARP) return drop('malformed');
  const arp = parseArp(eth.payload);
  if (!arp) return drop('malformed');
  if (eth.src !== eni.mac || arp.senderMac !== eni.mac) return drop('spoofed-sender');
  if (arp.senderIp !== 0 && arp.senderIp !== eni.ip) return drop('spoofed-sender');
  if (arp.op !== ARP_OP_REQUEST) return drop(arp.senderIp !== 0 && arp.senderIp === arp.targetIp ? 'gratuitous' : 'not-request');
  if (arp.senderIp !== 0 && arp.senderIp === arp.targetIp) return drop('gratuitous');
  if (arp.targetIp === eni.ip) return drop('own-address');

  let answeredMac: string | null = null;
  if (arp.targetIp === subnetRouter(eni.subnet) || arp.targetIp === subnetDns(eni.subnet)) {
    answeredMac = GATEWAY_MAC;
  } else {
    const target = directory.lookupByIp(eni.vpcId, arp.targetIp);
    if (target && target.eniId !== eni.eniId) answeredMac = target.mac;
  }
  if (answeredMac === null) return drop('unknown-target');
  // broadcast, or a unicast refresh (RFC 1122 §2.3.2.1) sent to the MAC we answer for
  if (eth.dst !== BROADCAST_MAC && eth.dst !== answeredMac) return drop('bad-destination');

  const payload = buildArp({
    op: ARP_OP_REPLY,
    senderMac: answeredMac,
    senderIp: arp.targetIp,
    targetMac: eni.mac,
    targetIp: arp.senderIp, // 0.0.0.0 for a probe, as Linux answers one
  });
  return { reply: buildEthernet({ dst: eni.mac, src: answeredMac, etherType: ETHERTYPE_ARP, payload }), answeredMac };
}

function drop(reason: ArpDropReason): ArpAnswer {
  return { reply: null, reason };
}

/** {@link respondToArp} with counters (for metrics: replies sent, drops by reason). */
export class ArpResponder {
  replies = 0;
  readonly drops: Record<ArpDropReason, number> = {
    malformed: 0,
    'bad-destination': 0,
    'not-request': 0,
    'spoofed-sender': 0,
    gratuitous: 0,
    'own-address': 0,
    'unknown-target': 0,
  };

  constructor(private readonly directory: EniDirectory) {}

  /** The reply frame to send to the ENI, or null (reason counted). */
  handle(frame: Uint8Array, eni: EniEntry): Buffer | null {
    const answer = respondToArp(frame, eni, this.directory);
    if (answer.reply) this.replies++;
    else this.drops[answer.reason]++;
    return answer.reply;
  }
}
