/**
 * The fleet's view kept up to date in place (../fleet/records.ts builds it whole): a watch batch
 * that touches only ENI records, address claims and host records changes the model, kinds and
 * peers it already has instead of building a second model of every ENI. Pure: no etcd, no timers.
 *
 * Why it equals a rebuild: an ENI record's fate depends on its subnet and groups (not changed by
 * such a batch) and on the older ENIs sharing one of its claims (id, MAC, subnet address, host
 * interface). The changed keys and, transitively, every record sharing a claim with one of them
 * (in the model or refused) are taken out and placed again in age order; no other record shares a
 * claim with them, so theirs stays as it was.
 */
import { LOCAL_HOST_ID, type EniKind } from '../api/vpc.js';
import { oneLine } from '../common/errors.js';
import { ipv4ToInt, normalizeMac } from '../vpc/packets.js';
import type { PeerRecord } from '../vpc/manager.js';
import type { EniRecord, VpcModel } from '../vpc/model.js';
import type { FlowLogRecord } from '../api/flow-logs.js';
import { FLEET_PREFIX, buildView, byAge, fleetKeys, modelHost, parseEni, peersOf, placeEni, viewHosts, type BadRecord, type FleetView, type HostRecord, type ParseCache, type ParsedEni } from './records.js';
import type { StoredKv } from './store.js';

/** Key kinds a batch may change and still be applied in place. */
const IN_PLACE = ['enis/', 'ips/', 'macs/', 'hosts/'].map((k) => FLEET_PREFIX + k);
const ENIS = FLEET_PREFIX + 'enis/';

/** Whether a change of `key` can be applied in place (anything else needs a rebuild). */
export function inPlaceKey(key: string): boolean {
  return IN_PLACE.some((p) => key.startsWith(p));
}

/** What an in-place change did: the ENIs taken out (as they were) and put in (as they are). */
export interface ViewDelta {
  before: EniRecord[];
  after: EniRecord[];
  /** Whether the host records (hence the peers) changed. */
  hostsChanged: boolean;
  /** Flow logs of ENIs taken out that could not be put back (their ENI is gone). */
  droppedFlowLogs: Array<{ flowLog: FlowLogRecord; err: string }>;
}

/** What a record that shares nothing cannot conflict with: its claims as comparable strings. */
function claimsOf(e: { id: string; subnetId: string; mac: string; privateIp: string; hostInterface: string }, host: string): string[] {
  return [`id ${e.id}`, `mac ${normalizeMac(e.mac) ?? e.mac}`, `ip ${e.subnetId} ${ipv4ToInt(e.privateIp) ?? e.privateIp}`, `if ${host}/${e.hostInterface}`];
}

export class FleetViewState {
  readonly model: VpcModel;
  readonly kinds: Record<string, EniKind>;
  hosts: HostRecord[];
  peers: PeerRecord[];
  private readonly bad = new Map<string, BadRecord>();
  /** Refused ENI records, with their claims when they parsed (one that did not parse has none). */
  private readonly refusedEnis = new Map<string, string[]>();
  private readonly hostKvs = new Map<string, StoredKv>();

  /** Build the view whole from every key (as {@link buildView}). */
  constructor(
    kvs: ReadonlyMap<string, StoredKv>,
    readonly localHostId: string,
    readonly localPublicKey: string | undefined,
    private readonly cache?: ParseCache,
  ) {
    const view = buildView(kvs.values(), localHostId, localPublicKey, cache);
    this.model = view.model;
    this.kinds = view.kinds;
    this.hosts = view.hosts;
    this.peers = view.peers;
    for (const b of view.bad) this.bad.set(b.key, b);
    for (const kv of kvs.values()) if (kv.key.startsWith(fleetKeys.hosts)) this.hostKvs.set(kv.key, kv);
    for (const b of view.bad) if (b.key.startsWith(ENIS)) this.refusedEnis.set(b.key, this.claimsOfValue(kvs.get(b.key)));
  }

  /** The view as {@link buildView} gives it. */
  view(): FleetView {
    return { model: this.model, kinds: this.kinds, hosts: this.hosts, peers: this.peers, bad: [...this.bad.values()] };
  }

  /**
   * Apply the changes of `keys` (each {@link inPlaceKey}; `get` gives a key's value now,
   * undefined once deleted) to the model, kinds and peers in place.
   */
  apply(keys: Iterable<string>, get: (key: string) => StoredKv | undefined): ViewDelta {
    let hostsChanged = false;
    const changed = new Set<string>();
    for (const key of keys) {
      if (key.startsWith(fleetKeys.hosts)) {
        hostsChanged = true;
        const kv = get(key);
        if (kv) this.hostKvs.set(key, kv);
        else this.hostKvs.delete(key);
      } else if (key.startsWith(ENIS)) changed.add(key);
    }
    if (hostsChanged) this.rebuildHosts();
    return { ...this.replaceEnis(this.closure(changed, get), get), hostsChanged };
  }

  /** The changed ENI keys and every key sharing a claim with one of them, transitively. */
  protected closure(changed: Set<string>, get: (key: string) => StoredKv | undefined): Set<string> {
    const all = new Set(changed);
    const todo = [...changed];
    for (let key = todo.pop(); key !== undefined; key = todo.pop()) {
      const claims = [...(this.refusedEnis.get(key) ?? []), ...this.claimsOfValue(get(key))];
      const held = this.inModel(key);
      if (held) claims.push(...claimsOf(held, held.hostId));
      for (const n of this.holders(new Set(claims))) {
        if (all.has(n)) continue;
        all.add(n);
        todo.push(n);
      }
    }
    return all;
  }

  /** Take `keys` out of the model and place those that still exist again, oldest first. */
  private replaceEnis(keys: Set<string>, get: (key: string) => StoredKv | undefined): Omit<ViewDelta, 'hostsChanged'> {
    const before: EniRecord[] = [];
    const saved: FlowLogRecord[] = [];
    for (const key of keys) {
      this.bad.delete(key);
      this.refusedEnis.delete(key);
      const held = this.inModel(key);
      if (!held) continue;
      before.push(held);
      // Deleting an ENI deletes its flow logs: kept to be put back if it comes back.
      saved.push(...this.model.flowLogs.list().filter((f) => f.resourceId === held.id));
      this.model.deleteEni(held.id);
      delete this.kinds[held.id];
    }
    const after: EniRecord[] = [];
    const present = [...keys].map(get).filter((kv): kv is StoredKv => kv !== undefined).sort(byAge);
    for (const kv of present) {
      let e: ParsedEni | undefined;
      try {
        e = parseEni(kv, this.cache);
        const kind = placeEni(this.model, kv, e, this.localHostId);
        if (kind) this.kinds[e.id] = kind;
        after.push(this.model.getEni(e.id));
      } catch (err) {
        this.bad.set(kv.key, { key: kv.key, modRevision: kv.modRevision, reason: oneLine(err) });
        this.refusedEnis.set(kv.key, e ? claimsOf(e, modelHost(e.hostId, this.localHostId)) : []);
      }
    }
    const droppedFlowLogs: ViewDelta['droppedFlowLogs'] = [];
    for (const fl of saved) {
      try {
        this.model.createFlowLog(fl);
      } catch (err) {
        droppedFlowLogs.push({ flowLog: fl, err: oneLine(err) });
      }
    }
    return { before, after, droppedFlowLogs };
  }

  /** The host records again (a few hundred at most): their conflicts are settled among all of them. */
  private rebuildHosts(): void {
    for (const key of this.bad.keys()) if (key.startsWith(fleetKeys.hosts)) this.bad.delete(key);
    const refuse = (kv: StoredKv, err: unknown) => this.bad.set(kv.key, { key: kv.key, modRevision: kv.modRevision, reason: oneLine(err) });
    this.hosts = viewHosts([...this.hostKvs.values()].sort(byAge), this.localHostId, this.localPublicKey, refuse, this.cache);
    this.peers = peersOf(this.hosts, this.localHostId);
  }

  /** The model's ENI placed from `key`, if any. */
  private inModel(key: string): EniRecord | undefined {
    const [host, id, ...rest] = key.slice(ENIS.length).split('/');
    if (host === undefined || id === undefined || rest.length) return undefined;
    const entry = this.model.tables.lookupById(id);
    return entry && entry.hostId === modelHost(host, this.localHostId) ? this.model.getEni(id) : undefined;
  }

  /** Keys of the records (in the model or refused) holding any of `claims`. */
  private holders(claims: Set<string>): string[] {
    const out: string[] = [];
    for (const c of claims) {
      const [what, a, b] = c.split(' ') as [string, string, string | undefined];
      let eniId: string | undefined;
      if (what === 'id') eniId = this.model.tables.lookupById(a)?.eniId;
      else if (what === 'mac') eniId = this.model.tables.lookupByMac(a)?.eniId;
      else if (what === 'ip') {
        const ip = Number(b);
        const vpcId = this.model.listSubnets().find((s) => s.id === a)?.vpcId;
        if (vpcId !== undefined && Number.isInteger(ip)) eniId = this.model.tables.lookupByIp(vpcId, ip)?.eniId;
      } else {
        const slash = a.indexOf('/');
        eniId = this.model.interfaceOwner(a.slice(0, slash), a.slice(slash + 1));
      }
      if (eniId !== undefined) {
        const e = this.model.getEni(eniId);
        out.push(fleetKeys.eni(e.hostId === LOCAL_HOST_ID ? this.localHostId : e.hostId, e.id));
      }
    }
    for (const [key, theirs] of this.refusedEnis) if (theirs.some((c) => claims.has(c))) out.push(key);
    return out;
  }

  /** Claims of a stored ENI value that parses (none otherwise). */
  private claimsOfValue(kv: StoredKv | undefined): string[] {
    if (!kv) return [];
    try {
      const e = parseEni(kv, this.cache);
      return claimsOf(e, modelHost(e.hostId, this.localHostId));
    } catch {
      return [];
    }
  }
}
