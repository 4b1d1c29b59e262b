/**
 * The fleet store over TLS to an etcd member named by IP: no TLS ServerName is sent (Node's
 * DEP0123 warning never appears), and the member's certificate is still verified against the
 * IP: a server whose certificate (from the same CA) names another address is refused.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:tls';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetStore, type FleetTls } from '../../src/fleet/store.js';
import { targetHost } from '../../src/fleet/etcd-tls.js';
import { ROOT } from '../helpers/nitride.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { run, runOk } from '../helpers/run.js';

const canRun = existsSync('/usr/bin/etcd');

describe('targetHost', () => {
  it('takes the host of host:port, [v6]:port and a bare host', () => {
    expect(targetHost('127.0.0.1:2379')).toBe('127.0.0.1');
    expect(targetHost('etcd-1.example:2379')).toBe('etcd-1.example');
    expect(targetHost('[fd00::1]:2379')).toBe('fd00::1');
    expect(targetHost('fd00::1')).toBe('fd00::1');
    expect(targetHost('etcd-1')).toBe('etcd-1');
  });
});

/** A fresh Node process opens the store and lists: its warnings, and whether the call worked. */
const PROBE = `
import { pathToFileURL } from 'node:url';
const warnings = [];
process.on('warning', (w) => warnings.push(w.code ?? w.name));
const { FleetStore } = await import(pathToFileURL(process.env.STORE).href);
const store = await FleetStore.open(JSON.parse(process.env.TLS));
const listed = await store.list('/').then(() => 'ok', (e) => String(e.message));
store.close();
console.log(JSON.stringify({ warnings, listed }));
`;

describe.skipIf(!canRun)('fleet store TLS to an IP endpoint', () => {
  let etcd: EtcdCluster;
  let tls: FleetTls;
  let rogue: Server | undefined;

  beforeAll(async () => {
    etcd = await startEtcd({ members: 1 });
    tls = { endpoints: etcd.endpoints, ...(await etcd.clientCert('host-a')) };
  }, 120_000);

  afterAll(async () => {
    rogue?.close();
    await etcd?.destroy();
  }, 60_000);

  it('connects to 127.0.0.1 without a DEP0123 warning', async () => {
    expect(etcd.endpoints[0]).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await run(process.execPath, ['--input-type=module', '-e', PROBE], {
      env: { STORE: path.join(ROOT, 'dist', 'fleet', 'store.js'), TLS: JSON.stringify(tls) },
      timeoutMs: 30_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ warnings: [], listed: 'ok' });
    expect(r.stderr).not.toContain('DEP0123');
  });

  it('refuses a member whose certificate names another IP, even signed by the fleet CA', async () => {
    // fleet-pki.sh always adds 127.0.0.1: this one is made by hand, for 127.0.0.2 only
    const f = (n: string) => path.join(etcd.dir, n);
    await runOk('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('elsewhere.key'), '-out', f('elsewhere.csr'), '-subj', '/CN=elsewhere']);
    writeFileSync(f('elsewhere.ext'), 'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.2\n');
    await runOk('openssl', ['x509', '-req', '-in', f('elsewhere.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('elsewhere.ext'), '-out', f('elsewhere.crt')]);
    rogue = createServer({ cert: readFileSync(f('elsewhere.crt')), key: readFileSync(f('elsewhere.key')), ALPNProtocols: ['h2'] }, (s) => s.destroy());
    await new Promise<void>((r) => rogue!.listen(0, '127.0.0.1', r));
    const port = (rogue.address() as { port: number }).port;
    const store = await FleetStore.open({ ...tls, endpoints: [`https://127.0.0.1:${port}`] });
    try {
      await expect(store.list('/')).rejects.toThrow(/IP: 127\.0\.0\.1 is not in the cert's list/);
    } finally {
      store.close();
    }
  });
});
