/**
 * The fleet's store: an etcd cluster reached with the npm `etcd3` client over TLS with this
 * host's client certificate. Thin on purpose: list a prefix at a revision, transactions with
 * compare-and-swap guards, a watch from a revision, a lease, a health probe. Calls fail fast
 * (a deadline, no backoff): the callers decide what to retry, and the data plane never waits on
 * any of it. A call that could not connect to its member goes on to the next member at once
 * (each member once): one dead member of three (a killed leader) neither fails calls nor
 * degrades the fleet. Only calls never sent: a transaction that may have committed is not sent twice.
 *
 * The host id is the CN of the client certificate: the identity the fleet knows a host by is
 * the one etcd authenticates (and, with RBAC, authorizes) it as.
 */
import { promises as fs } from 'node:fs';
import { ConstantBackoff, handleWhen, noop, retry } from 'cockatiel';
import { Etcd3, GRPCUnavailableError, type IKeyValue, type Lease, type Watcher } from 'etcd3';
import { RuntimeError, UsageError, oneLine } from '../common/errors.js';
import { etcdTlsCredentials, useEtcdTls } from './etcd-tls.js';
import { hostIdOfCertificate } from './identity.js';

export interface FleetTls {
  endpoints: string[];
  ca: string;
  cert: string;
  key: string;
}

/** One key as read from etcd (values are UTF-8 JSON; anything else fails validation later). */
export interface StoredKv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
}

/** A transaction's guard: the key's create revision (0: absent) or mod revision equals `revision`. */
export interface Guard {
  key: string;
  target: 'Create' | 'Mod';
  revision: number;
}

export interface TxnOps {
  guards: Guard[];
  puts?: Array<{ key: string; value: string; lease?: Lease }>;
  deletes?: string[];
}

/** The call never reached a member (nothing listens there): safe to send to another one. */
const neverSent = (err: Error) => err instanceof GRPCUnavailableError && /No connection established/.test(err.message);

/** Deadline of one unary call: long enough for a leader election, short enough to say "unreachable". */
const CALL_DEADLINE_MS = 3000;

export const toKv = (kv: IKeyValue): StoredKv => ({ key: kv.key.toString('utf8'), value: kv.value.toString('utf8'), createRevision: Number(kv.create_revision), modRevision: Number(kv.mod_revision) });

export class FleetStore {
  private constructor(
    readonly client: Etcd3,
    readonly hostId: string,
  ) {}

  static async open(tls: FleetTls): Promise<FleetStore> {
    const read = async (what: string, file: string) => {
      try {
        return await fs.readFile(file);
      } catch (err) {
        throw new RuntimeError(`cannot read --fleet-${what} ${file}: ${oneLine(err)}`, 'CONFIG');
      }
    };
    const [ca, cert, key] = [await read('ca', tls.ca), await read('cert', tls.cert), await read('key', tls.key)];
    const hostId = hostIdOfCertificate(cert, tls.cert);
    const client = new Etcd3({
      hosts: tls.endpoints,
      credentials: { rootCertificate: ca, certChain: cert, privateKey: key },
      dialTimeout: CALL_DEADLINE_MS,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
      faultHandling: { host: () => noop, global: retry(handleWhen(neverSent), { maxAttempts: tls.endpoints.length - 1 }), watchBackoff: new ConstantBackoff(1000).next() },
    });
    // no TLS ServerName for a member named by IP (Node's DEP0123); still verified against it
    useEtcdTls(client, etcdTlsCredentials(ca, cert, key));
    key.fill(0);
    return new FleetStore(client, hostId);
  }

  /** Every key under `prefix`, and the store's revision they were read at. */
  async list(prefix: string): Promise<{ revision: number; kvs: StoredKv[] }> {
    const res = await this.client.getAll().prefix(prefix).exec();
    return { revision: Number(res.header.revision), kvs: res.kvs.map(toKv) };
  }

  /** One transaction: all `puts` and `deletes` if every guard holds, nothing otherwise. */
  async txn(ops: TxnOps): Promise<{ succeeded: boolean; revision: number }> {
    let t = this.client.if(ops.guards[0]!.key, ops.guards[0]!.target, '==', ops.guards[0]!.revision);
    for (const g of ops.guards.slice(1)) t = t.and(g.key, g.target, '==', g.revision);
    const then = [
      ...(ops.puts ?? []).map((p) => (p.lease ? p.lease.put(p.key).value(p.value) : this.client.put(p.key).value(p.value))),
      ...(ops.deletes ?? []).map((k) => this.client.delete().key(k)),
    ];
    const res = await t.then(...then).commit();
    return { succeeded: res.succeeded, revision: Number(res.header.revision) };
  }

  /**
   * Watch `prefix` from `fromRevision` (inclusive); the caller handles the watcher's events (a
   * compacted `fromRevision` ends it with an 'error'). The client re-establishes the stream
   * itself after a disconnection, from the last revision it delivered.
   */
  watch(prefix: string, fromRevision: number): Watcher {
    return this.client.watch().prefix(prefix).startRevision(String(fromRevision)).watcher();
  }

  lease(ttlSeconds: number): Lease {
    return this.client.lease(ttlSeconds, { autoKeepAlive: true });
  }

  /** Whether a member answers now (the cluster's status through any endpoint). */
  async healthy(): Promise<boolean> {
    try {
      await this.client.get('/nitride/health').exec();
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    this.client.close();
  }
}
