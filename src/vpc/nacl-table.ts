/**
 * Network ACLs compiled for the data plane: a subnet's ACL becomes the entries of each local
 * ENI of the subnet, in rule-number order, laid out as security-group entries are
 * ({@link SG_ENTRY_BYTES} each) with the action in the byte those leave zero. The engine checks
 * every packet into or out of the ENI against them, first match wins, no match denies:
 * a short ordered scan (at most {@link MAX_NACL_ENTRIES_PER_DIRECTION} per direction, as AWS
 * caps them), stateless. {@link evaluateNacl} is the reference semantics, for tests.
 */
import type { NaclEntry } from '../api/network-acls.js';
import { parseCidr, prefixMask } from './packets.js';
import { SG_DIR_EGRESS, SG_DIR_INGRESS, SG_ENTRY_BYTES, SG_PROTO_ALL, encodeSg, ruleRange, type SgEntry, type SgPacket } from './sg-table.js';

export const NACL_ACTION_DENY = 0;
export const NACL_ACTION_ALLOW = 1;

export interface NaclTableEntry extends SgEntry {
  action: typeof NACL_ACTION_DENY | typeof NACL_ACTION_ALLOW;
}

/** The entries of an ACL, in evaluation order (by direction, then rule number). */
export function compileNacl(entries: readonly NaclEntry[]): NaclTableEntry[] {
  return [...entries]
    .sort((a, b) => (a.direction === b.direction ? a.ruleNumber - b.ruleNumber : a.direction === 'ingress' ? -1 : 1))
    .map((e) => {
      const [protocol, lo, hi] = ruleRange(e);
      const c = parseCidr(e.cidr)!;
      return {
        direction: e.direction === 'ingress' ? SG_DIR_INGRESS : SG_DIR_EGRESS,
        protocol,
        network: (c.network & prefixMask(c.prefix)) >>> 0,
        prefix: c.prefix,
        lo,
        hi,
        action: e.action === 'allow' ? NACL_ACTION_ALLOW : NACL_ACTION_DENY,
      };
    });
}

export function encodeNacl(entries: readonly NaclTableEntry[]): Buffer {
  const buf = encodeSg(entries);
  entries.forEach((e, i) => (buf[i * SG_ENTRY_BYTES + 3] = e.action));
  return buf;
}

/** Whether a packet passes (reference semantics of the engine's check): the first matching entry decides, none denies. */
export function evaluateNacl(entries: readonly NaclTableEntry[], p: SgPacket): boolean {
  const dir = p.direction === 'ingress' ? SG_DIR_INGRESS : SG_DIR_EGRESS;
  const hit = entries.find(
    (e) =>
      e.direction === dir &&
      (e.protocol === SG_PROTO_ALL || (e.protocol === p.protocol && p.port >= e.lo && p.port <= e.hi)) &&
      ((p.peer & prefixMask(e.prefix)) >>> 0) === e.network,
  );
  return hit?.action === NACL_ACTION_ALLOW;
}
