/**
 * The fleet's view kept in place (src/fleet/view-state.ts) against the view built whole
 * (buildView) after every batch of random etcd events on ENI, address-claim and host keys:
 * conflicting addresses, MACs, ids and interfaces, bad JSON, keys that do not match their
 * record, moves between hosts, deletions of a conflict's winner. Pure: no etcd, no timers.
 */
import { describe, expect, it } from 'vitest';
import { buildView, fleetKeys, type FleetView, type ParseCache } from '../../src/fleet/records.js';
import { FleetViewState } from '../../src/fleet/view-state.js';
import type { StoredKv } from '../../src/fleet/store.js';

const VPC = 'vpc-0000000000000000a';
const SUBNET = 'subnet-0000000000000000a';
const LOCAL = 'a';
const HOSTS = ['a', 'bb', 'cc', 'local'];
const KEYS = [1, 2, 3].map((n) => Buffer.alloc(32, n).toString('base64'));

/** A small deterministic generator (mulberry32): a failing seed can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An etcd keyspace: puts keep a key's create revision, a delete and a put make a new one. */
class Keyspace {
  readonly kvs = new Map<string, StoredKv>();
  private rev = 0;
  put(key: string, value: unknown): void {
    this.rev++;
    const old = this.kvs.get(key);
    this.kvs.set(key, { key, value: typeof value === 'string' ? value : JSON.stringify(value), createRevision: old?.createRevision ?? this.rev, modRevision: this.rev });
  }
  delete(key: string): void {
    this.rev++;
    this.kvs.delete(key);
  }
}

/** One random event on the keys the view keeps in place; returns the key. */
function randomEvent(ks: Keyspace, r: () => number): string {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const x = r();
  const existing = [...ks.kvs.keys()].filter((k) => k.startsWith(fleetKeys.enis));
  if (x < 0.25 && existing.length) {
    const key = pick(existing);
    ks.delete(key);
    return key;
  }
  if (x < 0.33) {
    const h = pick(['a', 'bb', 'cc']);
    const key = fleetKeys.host(h);
    if (r() < 0.3) ks.delete(key);
    else ks.put(key, r() < 0.1 ? '{bad' : { hostId: h, endpoint: `10.0.0.${1 + Math.floor(r() * 3)}:4789`, publicKey: pick(KEYS), version: '0.1.0' });
    return key;
  }
  if (x < 0.4) {
    const key = r() < 0.5 ? fleetKeys.ip(SUBNET, `10.1.1.${10 + Math.floor(r() * 4)}`) : fleetKeys.mac(`02:00:00:00:00:0${Math.floor(r() * 4)}`);
    if (r() < 0.5) ks.delete(key);
    else ks.put(key, 'eni-00000000000000001');
    return key;
  }
  const id = `eni-0000000000000000${Math.floor(r() * 6)}`;
  const hostId = pick(HOSTS);
  // Sometimes a key that names another host or id than the record (refused), or bad JSON.
  const key = r() < 0.08 ? fleetKeys.eni(pick(HOSTS), `eni-0000000000000000${Math.floor(r() * 6)}`) : fleetKeys.eni(hostId, id);
  const rec = {
    id,
    vpcId: r() < 0.05 ? 'vpc-0000000000000000b' : VPC,
    subnetId: r() < 0.05 ? 'subnet-0000000000000000b' : SUBNET,
    mac: `02:00:00:00:00:0${Math.floor(r() * 4)}`,
    privateIp: `10.1.1.${10 + Math.floor(r() * 4)}`,
    sourceDestCheck: r() < 0.5,
    hostInterface: `ni${Math.floor(r() * 3)}`,
    hostId,
    securityGroups: [`sg-${VPC.slice(4)}`],
    ...(r() < 0.3 ? { kind: pick(['tap', 'veth']) } : {}),
  };
  ks.put(key, r() < 0.05 ? '{not json' : rec);
  return key;
}

/** What must be equal, in an order that does not depend on how the model was filled. */
function comparable(v: FleetView) {
  const byId = <T extends { id: string }>(xs: T[]) => [...xs].sort((p, q) => (p.id < q.id ? -1 : 1));
  return {
    enis: byId(v.model.listEnis()),
    kinds: v.kinds,
    hosts: v.hosts,
    peers: v.peers,
    bad: [...v.bad].sort((p, q) => (p.key < q.key ? -1 : 1)),
  };
}

/** Runs `batches` random batches from `seed`; the first batch (index) whose views differ, or -1. */
function firstDifference(seed: number, batches: number, make = (kvs: Map<string, StoredKv>, cache: ParseCache) => new FleetViewState(kvs, LOCAL, KEYS[0], cache)): number {
  const r = rng(seed);
  const ks = new Keyspace();
  ks.put(fleetKeys.vpc(VPC), { id: VPC, cidr: '10.1.0.0/16' });
  ks.put(fleetKeys.subnet(SUBNET), { id: SUBNET, vpcId: VPC, cidr: '10.1.1.0/24' });
  const cache: ParseCache = new Map();
  const state = make(ks.kvs, cache);
  for (let b = 0; b < batches; b++) {
    const keys = Array.from({ length: 1 + Math.floor(r() * 4) }, () => randomEvent(ks, r));
    for (const k of keys) if (!ks.kvs.has(k)) cache.delete(k);
    state.apply(keys, (k) => ks.kvs.get(k));
    try {
      expect(comparable(state.view())).toEqual(comparable(buildView(ks.kvs.values(), LOCAL, KEYS[0])));
    } catch {
      return b;
    }
  }
  return -1;
}

/** A deliberately broken delta: only the changed keys are placed again, not what shares a claim with them. */
class NoClosure extends FleetViewState {
  protected override closure(changed: Set<string>): Set<string> {
    return changed;
  }
}

describe('FleetViewState', () => {
  it('equals a rebuild after every batch of random ENI, claim and host events', () => {
    for (let seed = 1; seed <= 60; seed++) expect({ seed, batch: firstDifference(seed, 150) }).toEqual({ seed, batch: -1 });
  });

  it('the comparison catches a delta that forgets records sharing a claim', () => {
    const failing = Array.from({ length: 60 }, (_, i) => firstDifference(i + 1, 150, (kvs, cache) => new NoClosure(kvs, LOCAL, KEYS[0], cache))).filter((b) => b >= 0);
    expect(failing.length).toBeGreaterThan(0);
  });

  it('a moved ENI leaves its old host and an address freed by a deleted winner goes to the next oldest', () => {
    const ks = new Keyspace();
    ks.put(fleetKeys.vpc(VPC), { id: VPC, cidr: '10.1.0.0/16' });
    ks.put(fleetKeys.subnet(SUBNET), { id: SUBNET, vpcId: VPC, cidr: '10.1.1.0/24' });
    const rec = (id: string, hostId: string, mac: string) => ({ id, vpcId: VPC, subnetId: SUBNET, mac, privateIp: '10.1.1.10', sourceDestCheck: true, hostInterface: `ni${id.slice(-1)}`, hostId, securityGroups: [`sg-${VPC.slice(4)}`] });
    const e1 = 'eni-00000000000000001';
    const e2 = 'eni-00000000000000002';
    ks.put(fleetKeys.eni('bb', e1), rec(e1, 'bb', '02:00:00:00:00:01'));
    ks.put(fleetKeys.eni('cc', e2), rec(e2, 'cc', '02:00:00:00:00:02'));
    const state = new FleetViewState(ks.kvs, LOCAL, KEYS[0]);
    expect(state.view().bad.map((b) => b.key)).toEqual([fleetKeys.eni('cc', e2)]);
    // The winner moves to this host: a new key (delete + put), so it is now the younger record.
    ks.delete(fleetKeys.eni('bb', e1));
    ks.put(fleetKeys.eni('a', e1), rec(e1, 'a', '02:00:00:00:00:01'));
    const delta = state.apply([fleetKeys.eni('bb', e1), fleetKeys.eni('a', e1)], (k) => ks.kvs.get(k));
    expect(state.model.listEnis().map((e) => [e.id, e.hostId])).toEqual([[e2, 'cc']]);
    expect(state.view().bad.map((b) => b.key)).toEqual([fleetKeys.eni('a', e1)]);
    expect(delta.before.map((e) => e.id).sort()).toEqual([e1]);
    expect(delta.after.map((e) => e.id)).toEqual([e2]);
  });
});
