#!/usr/bin/env node
// etcd-side chores of scripts/bench/fleet.mjs, run inside the namespace where the members listen
// (the benchmark itself stays in the root namespace). As etcd's root user (client certificate):
//   metrics   print the members' write counters as JSON: per member, from its /metrics
//   bulk      write N ENI records on the given hosts in a /N subnet, 40 ENIs (their record, IP
//             and MAC claims: what `eni create` writes) per transaction, cloned from an ENI
//             record already there; print the last revision as JSON
//   rbac      the production RBAC (scripts/fleet-etcd-rbac.sh) for the given hosts, in one
//             process: a role and a user per host, then auth on; print the seconds it took
//   node scripts/bench/fleet-etcd.mjs --endpoints URL,URL --ca F --cert F --key F metrics
//   node scripts/bench/fleet-etcd.mjs ... bulk --count N --hosts a,b --subnet ID --cidr A.B.C.D/N
//   node scripts/bench/fleet-etcd.mjs ... rbac --hosts a,b
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ROOT } from '../lib/bench-common.mjs';
import { setupFleetRbac } from '../lib/etcd-rbac.mjs';

const { Etcd3 } = createRequire(path.join(ROOT, 'package.json'))('etcd3');
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { endpoints: { type: 'string' }, ca: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, count: { type: 'string' }, hosts: { type: 'string' }, subnet: { type: 'string' }, cidr: { type: 'string' } },
});
const endpoints = opt.endpoints.split(',');
const tls = { ca: readFileSync(opt.ca), cert: readFileSync(opt.cert), key: readFileSync(opt.key) };

/** Counters of etcd's Prometheus text that say what a member wrote (WAL bytes, db size, keys). */
const METRICS = ['etcd_disk_wal_write_bytes_total', 'etcd_mvcc_db_total_size_in_bytes', 'etcd_mvcc_db_total_size_in_use_in_bytes', 'etcd_debugging_mvcc_keys_total', 'etcd_mvcc_put_total', 'etcd_server_proposals_committed_total'];

function scrape(url) {
  return new Promise((resolve, reject) => {
    https
      .get(`${url}/metrics`, { ...tls, timeout: 10_000 }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          const out = {};
          for (const line of text.split('\n')) {
            const m = /^(\w+)(?:\{[^}]*\})?\s+(\S+)$/.exec(line);
            if (m && METRICS.includes(m[1])) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
          }
          resolve(out);
        });
      })
      .on('error', reject);
  });
}

const ipToInt = (ip) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0) >>> 0;
const intToIp = (n) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

async function bulk() {
  const client = new Etcd3({ hosts: endpoints, credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key } });
  try {
    const template = (await client.getAll().prefix('/nitride/enis/').limit(1).exec()).kvs[0];
    if (!template) throw new Error('no ENI record to clone');
    const base = JSON.parse(template.value.toString());
    const hosts = opt.hosts.split(',');
    const count = Number(opt.count);
    const [net, bits] = opt.cidr.split('/');
    const first = ipToInt(net) + 4; // AWS reserves the first four addresses of a subnet
    if (count > 2 ** (32 - Number(bits)) - 5) throw new Error(`${count} ENIs do not fit in ${opt.cidr}`);
    let revision = 0;
    for (let i = 0; i < count; i += 40) {
      const ops = [];
      let guard;
      for (let j = i; j < Math.min(count, i + 40); j++) {
        const hex = j.toString(16).padStart(8, '0');
        const hostId = hosts[j % hosts.length];
        const rec = { ...base, id: `eni-0b${hex}0000000`, subnetId: opt.subnet, hostId, mac: `02:b0:${hex.match(/../g).join(':')}`, privateIp: intToIp(first + j), hostInterface: `nb${hex}` };
        const key = `/nitride/enis/${hostId}/${rec.id}`;
        guard ??= key;
        ops.push(client.put(key).value(JSON.stringify(rec)), client.put(`/nitride/ips/${opt.subnet}/${rec.privateIp}`).value(rec.id), client.put(`/nitride/macs/${rec.mac}`).value(rec.id));
      }
      const res = await client.if(guard, 'Create', '==', 0).then(...ops).commit();
      if (!res.succeeded) throw new Error(`${guard} exists already`);
      revision = Number(res.header.revision);
    }
    return { revision };
  } finally {
    client.close();
  }
}

async function rbac() {
  const client = new Etcd3({ hosts: endpoints, credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key } });
  try {
    const t0 = process.hrtime.bigint();
    await setupFleetRbac(client, opt.hosts.split(','));
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  } finally {
    client.close();
  }
}

try {
  if (positionals[0] === 'rbac') console.log(JSON.stringify(await rbac()));
  else if (positionals[0] === 'metrics') console.log(JSON.stringify(await Promise.all(endpoints.map(scrape))));
  else if (positionals[0] === 'bulk') console.log(JSON.stringify(await bulk()));
  else throw new Error(`unknown command '${positionals[0]}'`);
} catch (err) {
  console.error(`fleet-etcd: ${err.message}`);
  process.exitCode = 1;
}
