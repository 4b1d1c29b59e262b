/**
 * The address and MAC claims (/ips/<subnet>/<ip>, /macs/<mac>) as the mirror keeps them. There
 * is one of each per ENI (20,000 at 10,000 ENIs) and the view never reads them: only `eni
 * create`'s first guess of a free address and the snapshot do. So they are kept as numbers
 * under their subnet, not as key strings in StoredKv objects (~3 MB less at 10,000 ENIs); a key
 * not in the canonical form `eni create` writes is kept as it came. What goes in comes out
 * unchanged (key, value, revisions).
 */
import { NestedMap } from '../common/nested-map.js';
import { intToIpv4, ipv4ToInt } from '../vpc/packets.js';
import { FLEET_PREFIX } from './records.js';
import type { StoredKv } from './store.js';

const IPS = `${FLEET_PREFIX}ips/`;
const MACS = `${FLEET_PREFIX}macs/`;
const MAC_TEXT = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** A claim without its key (the key is where it is kept). */
interface Claim {
  value: string;
  createRevision: number;
  modRevision: number;
}

/** Whether `key` is an address or MAC claim. */
export function isClaimKey(key: string): boolean {
  return key.startsWith(IPS) || key.startsWith(MACS);
}

const macOf = (n: number) => n.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');

export class ClaimStore {
  /** Subnet id → address → claim. */
  private readonly ips = new NestedMap<string, number, Claim>();
  /** MAC as a 48-bit number → claim. */
  private readonly macs = new Map<number, Claim>();
  /** Claims whose key is not in canonical form, whole. */
  private readonly other = new Map<string, StoredKv>();

  set(kv: StoredKv): void {
    const claim: Claim = { value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision };
    const ip = ipSlot(kv.key);
    if (ip) this.ips.set(ip.subnet, ip.n, claim);
    else {
      const mac = macNumber(kv.key);
      if (mac !== undefined) this.macs.set(mac, claim);
      else this.other.set(kv.key, kv);
    }
  }

  get(key: string): StoredKv | undefined {
    const ip = ipSlot(key);
    const mac = ip ? undefined : macNumber(key);
    const claim = ip ? this.ips.get(ip.subnet, ip.n) : mac !== undefined ? this.macs.get(mac) : undefined;
    return claim ? { key, ...claim } : this.other.get(key);
  }

  delete(key: string): void {
    const ip = ipSlot(key);
    const mac = ip ? undefined : macNumber(key);
    if (ip) this.ips.delete(ip.subnet, ip.n);
    else if (mac !== undefined) this.macs.delete(mac);
    this.other.delete(key);
  }

  clear(): void {
    this.ips.clear();
    this.macs.clear();
    this.other.clear();
  }

  /** Every claim whose key starts with `prefix` (one subnet's addresses: only those are looked at). */
  *under(prefix = FLEET_PREFIX): Generator<StoredKv> {
    for (const [subnet, map] of this.ips.groups()) {
      const at = `${IPS}${subnet}/`;
      if (!at.startsWith(prefix) && !prefix.startsWith(at)) continue;
      for (const [n, claim] of map) {
        const key = at + intToIpv4(n);
        if (key.startsWith(prefix)) yield { key, ...claim };
      }
    }
    if (MACS.startsWith(prefix) || prefix.startsWith(MACS)) {
      for (const [n, claim] of this.macs) {
        const key = MACS + macOf(n);
        if (key.startsWith(prefix)) yield { key, ...claim };
      }
    }
    for (const kv of this.other.values()) if (kv.key.startsWith(prefix)) yield kv;
  }
}

/** Where an address claim in canonical form is kept: its subnet and address as a number. */
function ipSlot(key: string): { subnet: string; n: number } | undefined {
  if (!key.startsWith(IPS)) return undefined;
  const slash = key.lastIndexOf('/');
  const subnet = key.slice(IPS.length, slash);
  const text = key.slice(slash + 1);
  const n = ipv4ToInt(text);
  if (!subnet || subnet.includes('/') || n === null || intToIpv4(n) !== text) return undefined;
  return { subnet, n };
}

/** A MAC claim's MAC as a number, if its key is in canonical form. */
function macNumber(key: string): number | undefined {
  if (!key.startsWith(MACS)) return undefined;
  const text = key.slice(MACS.length);
  return MAC_TEXT.test(text) ? parseInt(text.replace(/:/g, ''), 16) : undefined;
}
