/**
 * The fleet's records in etcd: the key layout, the record schemas, and the view a daemon builds
 * from them (its VPC model, the netdev kinds of its ENIs, its peers). Pure: no etcd, no timers.
 *
 * Layout (values are JSON):
 *   /nitride/hosts/<hostId>            HostRecord, under the host's lease
 *   /nitride/vpcs/<vpcId>              VpcRecord
 *   /nitride/subnets/<subnetId>        SubnetRecord
 *   /nitride/sgs/<sgId>                SecurityGroupRecord (a VPC's default group has one once
 *                                      its rules change; until then it is implied by the VPC)
 *   /nitride/acls/<aclId>              NetworkAclRecord, its subnets included (a default ACL has
 *                                      one once its entries change, listing no subnets)
 *   /nitride/enis/<hostId>/<eniId>     FleetEniRecord (the key's host is the ENI's placement)
 *   /nitride/ips/<subnetId>/<ip>       the ENI id holding the address (allocation claim)
 *   /nitride/macs/<mac>                the ENI id holding the MAC (allocation claim)
 *
 * A record is only a claim: one that fails validation (bad JSON, bad fields, a key that does
 * not match its content, a duplicate address, MAC or public key of an earlier record) is left
 * out of the view and reported in `bad`; it never throws and never programs a route.
 * Conflicts are settled by age: the record created first (lowest create revision) wins. A
 * group left out takes with it the groups whose rules name it and the ENIs that have it.
 */
import { z } from 'zod';
import { oneLine } from '../common/errors.js';
import { endpointOrNull } from '../common/endpoint.js';
import { LOCAL_HOST_ID, PEER_NAME_PATTERN, type EniKind } from '../api/vpc.js';
import { isResourceId } from '../api/ids.js';
import { decodeKey, encodeKey } from '../vpc/handshake.js';
import type { PeerRecord } from '../vpc/manager.js';
import type { SecurityGroupRecord } from '../api/security-groups.js';
import { EniStateRecord, NetworkAclStateRecord, SecurityGroupStateRecord, SubnetStateRecord, VpcModel, VpcStateRecord, type EniRecord } from '../vpc/model.js';
import { DEFAULT_GROUP_NAME, SecurityGroups, defaultGroupId } from '../vpc/security-groups.js';
import { NetworkAcls, defaultAclId } from '../vpc/network-acls.js';
import type { StoredKv } from './store.js';

export const FLEET_PREFIX = '/nitride/';

export const fleetKeys = {
  hosts: `${FLEET_PREFIX}hosts/`,
  subnets: `${FLEET_PREFIX}subnets/`,
  enis: `${FLEET_PREFIX}enis/`,
  sgs: `${FLEET_PREFIX}sgs/`,
  acls: `${FLEET_PREFIX}acls/`,
  host: (hostId: string) => `${FLEET_PREFIX}hosts/${hostId}`,
  vpc: (id: string) => `${FLEET_PREFIX}vpcs/${id}`,
  subnet: (id: string) => `${FLEET_PREFIX}subnets/${id}`,
  sg: (id: string) => `${FLEET_PREFIX}sgs/${id}`,
  acl: (id: string) => `${FLEET_PREFIX}acls/${id}`,
  enisOf: (hostId: string) => `${FLEET_PREFIX}enis/${hostId}/`,
  eni: (hostId: string, id: string) => `${FLEET_PREFIX}enis/${hostId}/${id}`,
  ipsOf: (subnetId: string) => `${FLEET_PREFIX}ips/${subnetId}/`,
  ip: (subnetId: string, ip: string) => `${FLEET_PREFIX}ips/${subnetId}/${ip}`,
  mac: (mac: string) => `${FLEET_PREFIX}macs/${mac}`,
};

export interface HostRecord {
  hostId: string;
  /** Numeric underlay HOST:PORT. */
  endpoint: string;
  /** X25519 public key, base64. */
  publicKey: string;
  /** The daemon's version. */
  version: string;
}

/** An ENI as the fleet stores it: the model's record with its real host id, and the netdev kind on that host. */
export type FleetEniRecord = EniRecord & { kind?: EniKind };

const HostId = z.string().regex(PEER_NAME_PATTERN);
export const HostRecordSchema = z
  .object({
    hostId: HostId,
    endpoint: z.string().max(64).refine((t) => endpointOrNull(t, { numeric: true }) !== null, 'must be NUMERIC-HOST:PORT'),
    publicKey: z.string().max(64).refine((t) => {
      try {
        return encodeKey(decodeKey(t)) === t;
      } catch {
        return false;
      }
    }, 'must be a 32-byte base64 key'),
    version: z.string().max(64),
  })
  .strict();
const VpcSchema = VpcStateRecord;
const SubnetSchema = SubnetStateRecord;
const SgSchema = SecurityGroupStateRecord;
const AclSchema = NetworkAclStateRecord;
const EniSchema = EniStateRecord.extend({ hostId: HostId, securityGroups: z.array(z.string()), kind: z.enum(['tap', 'veth']).optional() });

/** A record left out of the view, and why (one line). */
export interface BadRecord {
  key: string;
  modRevision: number;
  reason: string;
}

export interface FleetView {
  /** The VPC model as this host sees it: its own ENIs under {@link LOCAL_HOST_ID}, others under their host id. */
  model: VpcModel;
  /** Netdev kinds of this host's ENIs. */
  kinds: Record<string, EniKind>;
  /** Every valid host record, this host's included. */
  hosts: HostRecord[];
  /** The other hosts, as peers. */
  peers: PeerRecord[];
  bad: BadRecord[];
}

/**
 * What {@link buildView} learnt of each key at its mod revision: whether its value passed its
 * schema (the schemas have no transforms: a value that passed once is taken from JSON.parse
 * alone). Schema checks were most of a rebuild's time at 10,000 ENIs; the mirror keeps one.
 */
export type ParseCache = Map<string, { modRevision: number; schema: unknown; error: string | null }>;

function parseJson<T>(kv: StoredKv, schema: z.ZodType<T>, cache?: ParseCache): T {
  const hit = cache?.get(kv.key);
  if (hit && hit.modRevision === kv.modRevision && hit.schema === schema) {
    if (hit.error !== null) throw new Error(hit.error);
    return JSON.parse(kv.value) as T;
  }
  let error: string | null = null;
  try {
    let raw: unknown;
    try {
      raw = JSON.parse(kv.value);
    } catch {
      throw new Error('not JSON');
    }
    const r = schema.safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new Error(issue ? `${issue.path.join('.') || 'record'}: ${issue.message}` : 'invalid');
    }
    return r.data;
  } catch (err) {
    error = (err as Error).message;
    throw err;
  } finally {
    cache?.set(kv.key, { modRevision: kv.modRevision, schema, error });
  }
}

/**
 * Build this host's view from every key under {@link FLEET_PREFIX}. `localPublicKey`: this
 * host's key (a record of another host claiming it is refused); absent while the VPC is down.
 * `cache`: the caller's {@link ParseCache}, kept across builds (entries of keys gone are the caller's to drop).
 */
export function buildView(kvs: Iterable<StoredKv>, localHostId: string, localPublicKey?: string, cache?: ParseCache): FleetView {
  const byKind = { hosts: [] as StoredKv[], vpcs: [] as StoredKv[], subnets: [] as StoredKv[], sgs: [] as StoredKv[], acls: [] as StoredKv[], enis: [] as StoredKv[] };
  for (const kv of kvs) {
    const kind = kv.key.slice(FLEET_PREFIX.length).split('/')[0];
    if (kind === 'hosts' || kind === 'vpcs' || kind === 'subnets' || kind === 'sgs' || kind === 'acls' || kind === 'enis') byKind[kind].push(kv);
  }
  for (const list of Object.values(byKind)) list.sort(byAge);
  const bad: BadRecord[] = [];
  const refuse = (kv: StoredKv, err: unknown) => bad.push({ key: kv.key, modRevision: kv.modRevision, reason: oneLine(err) });

  const hosts = viewHosts(byKind.hosts, localHostId, localPublicKey, refuse, cache);
  const peers = peersOf(hosts, localHostId);

  const model = new VpcModel({ localHostId: LOCAL_HOST_ID });
  for (const kv of byKind.vpcs) {
    try {
      const v = parseJson(kv, VpcSchema, cache);
      if (kv.key !== fleetKeys.vpc(v.id)) throw new Error(`names VPC ${v.id}`);
      model.createVpc(v);
    } catch (err) {
      refuse(kv, err);
    }
  }
  for (const kv of byKind.subnets) {
    try {
      const s = parseJson(kv, SubnetSchema, cache);
      if (kv.key !== fleetKeys.subnet(s.id)) throw new Error(`names subnet ${s.id}`);
      model.createSubnet(s);
    } catch (err) {
      refuse(kv, err);
    }
  }
  const groups: Array<{ kv: StoredKv; group: SecurityGroupRecord }> = [];
  const groupNames = new Map<string, string>();
  for (const kv of byKind.sgs) {
    try {
      const { record: g, isDefault } = vpcPart(kv, SgSchema, model, 'sg', defaultGroupId, (id) => model.securityGroups.has(id));
      if (isDefault !== (g.name === DEFAULT_GROUP_NAME)) throw new Error(isDefault ? `a default group must be named '${DEFAULT_GROUP_NAME}'` : `the name '${DEFAULT_GROUP_NAME}' is the default group's`);
      const holder = groupNames.get(`${g.vpcId}/${g.name}`);
      if (holder !== undefined) throw new Error(`${g.vpcId} already has a group named '${g.name}' (${holder})`);
      groupNames.set(`${g.vpcId}/${g.name}`, g.id);
      groups.push({ kv, group: g });
    } catch (err) {
      refuse(kv, err);
    }
  }
  for (const { kv, err } of restoreGroups(model, groups)) refuse(kv, err);
  const aclOfSubnet = new Map<string, string>();
  for (const kv of byKind.acls) {
    try {
      const { record: a, isDefault } = vpcPart(kv, AclSchema, model, 'acl', defaultAclId, (id) => model.networkAcls.has(id));
      if (a.isDefault !== isDefault) throw new Error(isDefault ? `is the default ACL of ${a.vpcId}` : `is not the default ACL of ${a.vpcId}`);
      if (isDefault && a.subnets.length) throw new Error('a default ACL lists no subnets (it has those no other ACL has)');
      for (const s of a.subnets) {
        const holder = aclOfSubnet.get(s);
        if (holder !== undefined) throw new Error(`subnet ${s} is associated with ${holder}`);
        if (model.getSubnet(s).vpcId !== a.vpcId) throw new Error(`subnet ${s} is not in ${a.vpcId}`);
      }
      // Entries checked on a scratch first: a record is kept whole or not at all.
      new NetworkAcls(() => a.id).restore(a);
      model.networkAcls.restore(a);
      for (const s of a.subnets) {
        model.associateNetworkAcl(a.id, s);
        aclOfSubnet.set(s, a.id);
      }
    } catch (err) {
      refuse(kv, err);
    }
  }
  // A default group or ACL whose record was refused fails closed (no rules: nothing passes that
  // needs one): its rules are unknown, and the ones its VPC implies could reopen what was revoked.
  const refused = new Set(bad.map((b) => b.key));
  for (const v of model.listVpcs()) {
    const sg = defaultGroupId(v.id);
    if (refused.has(fleetKeys.sg(sg))) model.securityGroups.restore({ id: sg, vpcId: v.id, name: DEFAULT_GROUP_NAME, description: 'default VPC security group (its record was refused: no rules until rewritten)', ingress: [], egress: [] });
    const acl = defaultAclId(v.id);
    if (refused.has(fleetKeys.acl(acl))) model.networkAcls.restore({ id: acl, vpcId: v.id, isDefault: true, entries: [], subnets: [] });
  }
  const kinds: Record<string, EniKind> = {};
  for (const kv of byKind.enis) {
    try {
      const e = parseEni(kv, cache);
      const kind = placeEni(model, kv, e, localHostId);
      if (kind) kinds[e.id] = kind;
    } catch (err) {
      refuse(kv, err);
    }
  }
  return { model, kinds, hosts, peers, bad };
}

/** The order records are taken in: the one created first wins a conflict. */
export function byAge(a: StoredKv, b: StoredKv): number {
  return a.createRevision - b.createRevision || (a.key < b.key ? -1 : 1);
}

/** The valid host records among `kvs` (sorted {@link byAge}); the others go to `refuse`. */
export function viewHosts(kvs: StoredKv[], localHostId: string, localPublicKey: string | undefined, refuse: (kv: StoredKv, err: unknown) => void, cache?: ParseCache): HostRecord[] {
  const hosts: HostRecord[] = [];
  const keyOwner = new Map<string, string>();
  if (localPublicKey) keyOwner.set(localPublicKey, localHostId);
  const endpointOwner = new Map<string, string>();
  for (const kv of kvs) {
    try {
      const h = parseJson(kv, HostRecordSchema, cache);
      if (kv.key !== fleetKeys.host(h.hostId)) throw new Error(`names host ${h.hostId}`);
      const keyHolder = keyOwner.get(h.publicKey);
      if (keyHolder !== undefined && keyHolder !== h.hostId) throw new Error(`claims the public key of host ${keyHolder}`);
      const epHolder = endpointOwner.get(h.endpoint);
      if (epHolder !== undefined && epHolder !== h.hostId) throw new Error(`claims the endpoint of host ${epHolder}`);
      keyOwner.set(h.publicKey, h.hostId);
      endpointOwner.set(h.endpoint, h.hostId);
      hosts.push(h);
    } catch (err) {
      refuse(kv, err);
    }
  }
  return hosts;
}

/** The other hosts, as peers. */
export function peersOf(hosts: HostRecord[], localHostId: string): PeerRecord[] {
  return hosts.filter((h) => h.hostId !== localHostId).map((h) => ({ name: h.hostId, endpoint: h.endpoint, publicKey: h.publicKey, plaintext: false }));
}

export type ParsedEni = z.infer<typeof EniSchema>;

/** An ENI record's value, checked against its schema (throws one line). */
export function parseEni(kv: StoredKv, cache?: ParseCache): ParsedEni {
  return parseJson(kv, EniSchema, cache);
}

/** The ENI's host in the model: {@link LOCAL_HOST_ID} for this host's. */
export function modelHost(hostId: string, localHostId: string): string {
  return hostId === localHostId ? LOCAL_HOST_ID : hostId;
}

/**
 * Put a parsed ENI record into the model, or throw why not (its key, its subnet, a conflict
 * with an ENI already there); this host's ENI's netdev kind, undefined for another host's.
 */
export function placeEni(model: VpcModel, kv: StoredKv, e: ParsedEni, localHostId: string): EniKind | undefined {
  if (kv.key !== fleetKeys.eni(e.hostId, e.id)) throw new Error(`names ENI ${e.id} on host ${e.hostId}`);
  if (e.hostId === LOCAL_HOST_ID) throw new Error(`'${LOCAL_HOST_ID}' is not a fleet host id`);
  const { kind, vpcId, ...input } = e;
  const created = model.createEni({ ...input, hostId: modelHost(e.hostId, localHostId) });
  if (created.vpcId !== vpcId) {
    model.deleteEni(e.id);
    throw new Error(`names ${vpcId} but its subnet is in ${created.vpcId}`);
  }
  return e.hostId === localHostId ? (kind ?? 'tap') : undefined;
}

/**
 * A security group's or network ACL's record: its key names it, its id has the kind's format, its
 * VPC is in the view, and an id that is not its own VPC's default is not another VPC's default.
 */
function vpcPart<T extends { id: string; vpcId: string }>(kv: StoredKv, schema: z.ZodType<T>, model: VpcModel, kind: 'sg' | 'acl', defaultId: (vpcId: string) => string, exists: (id: string) => boolean): { record: T; isDefault: boolean } {
  const record = parseJson(kv, schema);
  const what = kind === 'sg' ? 'security group' : 'network ACL';
  if (kv.key !== (kind === 'sg' ? fleetKeys.sg(record.id) : fleetKeys.acl(record.id))) throw new Error(`names ${what} ${record.id}`);
  if (!isResourceId(kind, record.id)) throw new Error(`'${record.id}' is not a ${what} id`);
  model.getVpc(record.vpcId);
  const isDefault = record.id === defaultId(record.vpcId);
  if (!isDefault && exists(record.id)) throw new Error(`${record.id} is another VPC's default ${kind === 'sg' ? 'group' : 'ACL'}`);
  return { record, isDefault };
}

/**
 * Put the groups into the model, rules checked as `authorize` checks them. A group whose rules
 * fail (one names a group left out, or is malformed) is left out too, and so on until every
 * remaining group's rules hold; a default group left out has no rules (see buildView).
 */
function restoreGroups(model: VpcModel, groups: Array<{ kv: StoredKv; group: SecurityGroupRecord }>): Array<{ kv: StoredKv; err: unknown }> {
  const failed: Array<{ kv: StoredKv; err: unknown }> = [];
  let live = groups;
  for (;;) {
    const trial = new SecurityGroups(() => {
      throw new Error('no new ids here');
    });
    for (const v of model.listVpcs()) trial.createDefault(v.id);
    const out: typeof failed = [];
    for (const { group } of live) trial.restore(group);
    for (const x of live) {
      try {
        trial.restoreRules(x.group);
      } catch (err) {
        out.push({ kv: x.kv, err });
      }
    }
    if (!out.length) break;
    failed.push(...out);
    live = live.filter((x) => !out.some((o) => o.kv === x.kv));
  }
  for (const { group } of live) model.securityGroups.restore(group);
  for (const { group } of live) model.securityGroups.restoreRules(group);
  return failed;
}
