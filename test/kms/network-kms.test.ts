/**
 * The network KMS against the real thing: two hosts (network namespaces joined by a veth
 * underlay, each with its own host KMS and daemon), one `nitride kms serve --listen` in host
 * A's namespace on the underlay address. Host B without a grant is refused; a volume created on
 * A (its record and ciphertext carried to B, as shared storage will) is unwrapped by B with
 * B's own grant; the KMS's audit log names both hosts; a hostile client's garbage, replayed and
 * forged records are dropped and counted while the KMS keeps serving; no file or log holds the
 * data key. Outcomes and counts, no timings.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { KmsClient } from '../../src/kms/client.js';
import type { KmsStatus } from '../../src/kms/protocol.js';
import { loadSodium } from '../../src/kms/sodium.js';
import { encodeKey, generateHostKeys } from '../../src/vpc/handshake.js';
import { CLI, ROOT, nitride, tempDir } from '../helpers/nitride.js';
import { NsLab, waitFor, type NsHost } from '../helpers/netns.js';
import { run } from '../helpers/run.js';
import { containsBytes, filesUnder, keyNeedles } from '../helpers/scan.js';

const hasCommand = (cmd: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${cmd}`));
const canRun = process.getuid?.() === 0 && hasCommand('ip') && hasCommand('qemu-io');

const prefix = 'ntk' + randomBytes(3).toString('hex');
const octet = 16 + (randomBytes(1)[0]! % 200);
const scratch = tempDir('nitride kms net-');
const lab = new NsLab(prefix, scratch.dir);
const KMS_PORT = 7700;
const kmsDir = path.join(scratch.dir, 'netkms');
const kmsSocket = path.join(scratch.dir, 'netkms-run', 'kms.sock');
let kmsProc: ChildProcess | undefined;
let kmsOutput = '';
let kmsEndpoint = '';
let kmsPublicKey = '';
let a: NsHost;
let b: NsHost;

const kmsCli = (...args: string[]) => nitride(['kms', ...args, '--socket', kmsSocket]);
async function kmsStatus(): Promise<KmsStatus> {
  const r = await kmsCli('status', '--json');
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as KmsStatus;
}
async function hostKey(h: NsHost): Promise<string> {
  return (await h.json<{ publicKey: string }>(['key', 'show'])).publicKey;
}
function audit(): Array<Record<string, any>> {
  return readFileSync(path.join(kmsDir, 'audit.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, any>);
}
const uri = (h: NsHost, id: string) => `nbd+unix:///${id}?socket=${h.nbdSocket.replace(/ /g, "%20")}`;

beforeAll(async () => {
  if (!canRun) return;
  const nsA = await lab.addNamespace('a');
  const nsB = await lab.addNamespace('b');
  const [ipA, ipB] = await lab.underlay(nsA, nsB, octet);
  kmsEndpoint = `${ipA}:${KMS_PORT}`;
  kmsProc = spawn('ip', ['netns', 'exec', nsA, process.execPath, CLI, 'kms', 'serve', '--state-dir', kmsDir, '--socket', kmsSocket, '--listen', kmsEndpoint], { stdio: ['ignore', 'pipe', 'pipe'] });
  kmsProc.stdout!.on('data', (d: Buffer) => (kmsOutput += d.toString()));
  kmsProc.stderr!.on('data', (d: Buffer) => (kmsOutput += d.toString()));
  await waitFor('the network KMS', async () => {
    if (kmsProc!.exitCode !== null) throw Object.assign(new Error(`network KMS exited: ${kmsOutput}`), { fatal: true });
    return (await kmsStatus()).network !== null;
  });
  kmsPublicKey = (await kmsStatus()).network!.publicKey;
  const daemonArgs = ['--kms-endpoint', kmsEndpoint, '--kms-public-key', kmsPublicKey];
  a = await lab.startHost('ha', nsA, ipA, daemonArgs);
  b = await lab.startHost('hb', nsB, ipB, daemonArgs);
}, 180_000);

afterAll(async () => {
  if (kmsProc && kmsProc.exitCode === null) {
    const exited = new Promise((r) => kmsProc!.once('exit', r));
    kmsProc.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (kmsProc.exitCode === null) kmsProc.kill('SIGKILL');
  }
  await lab.teardown();
  scratch.cleanup();
}, 60_000);

describe.skipIf(!canRun)('network KMS across two namespace hosts', () => {
  let vol: VolumeInfo;

  it('a host without a grant is refused with a clear error; a granted host creates a volume', async () => {
    const noGrant = await a.cli(['volume', 'create', '--size', '8M']);
    expect(noGrant.code).toBe(1);
    expect(noGrant.stderr.trim()).toBe(`nitride: the KMS at ${kmsEndpoint} refused this host: this KMS has no grant for your host key (ask its operator: nitride kms grant create)`);

    const g = await kmsCli('grant', 'create', '--host', 'ha', '--public-key', await hostKey(a), '--key', 'alias/nitride/ebs', '--context', 'volume=vol-*', '--operations', 'GenerateDataKeyWithoutPlaintext,Decrypt', '--json');
    expect(g.code, g.stderr).toBe(0);
    vol = await a.json<VolumeInfo>(['volume', 'create', '--size', '8M', '--name', 'moving']);
    const w = await run('qemu-io', ['-f', 'raw', uri(a, vol.id), '-c', 'write -P 0x5c 0 256k', '-c', 'write -P 0xa7 1M 64k']);
    expect(w.code, w.stderr).toBe(0);
    // the grant's context does not cover the host key's context: A cannot use it for that
    expect((await kmsStatus()).network!.grants).toBe(1);
  });

  it('host B unwraps the key of a volume created on A only with its own grant', async () => {
    // carry the volume to B (record with the wrapped key, and the ciphertext), as shared storage will
    await b.restartDaemon(() => {
      const to = path.join(b.dir, 'state', 'volumes');
      mkdirSync(to, { recursive: true });
      for (const ext of ['json', 'img']) copyFileSync(path.join(a.dir, 'state', 'volumes', `${vol.id}.${ext}`), path.join(to, `${vol.id}.${ext}`));
    });
    const refused = await run('qemu-io', ['-f', 'raw', uri(b, vol.id), '-c', 'read -P 0x5c 0 256k']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('refused this host');

    const g = await kmsCli('grant', 'create', '--host', 'hb', '--public-key', await hostKey(b), '--key', 'alias/nitride/ebs', '--context', 'volume=vol-*', '--operations', 'Decrypt');
    expect(g.code, g.stderr).toBe(0);
    const read = await run('qemu-io', ['-f', 'raw', uri(b, vol.id), '-c', 'read -P 0x5c 0 256k', '-c', 'read -P 0xa7 1M 64k', '-c', 'read -P 0 2M 64k']);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout).not.toMatch(/Pattern verification failed/);

    // Decrypt only: B may not create volumes
    const create = await b.cli(['volume', 'create', '--size', '8M']);
    expect(create.code).toBe(1);
    expect(create.stderr.trim()).toBe(`nitride: host hb has no grant for GenerateDataKeyWithoutPlaintext on alias/nitride/ebs with context {"volume":"${create.stderr.match(/vol-[0-9a-f]+/)?.[0]}"}`);
  });

  it('the audit log names both hosts and every refusal', async () => {
    const lines = audit();
    const keyA = await hostKey(a);
    const keyB = await hostKey(b);
    const find = (pred: (l: Record<string, any>) => boolean) => lines.find(pred);
    expect(find((l) => l.action === 'kms.Connect' && l.status === 403 && l.caller.publicKey === keyA)).toBeDefined();
    expect(find((l) => l.action === 'kms.Connect' && l.status === 403 && l.caller.publicKey === keyB)).toBeDefined();
    expect(find((l) => l.action === 'kms.GenerateDataKeyWithoutPlaintext' && l.status === 200 && l.caller.host === 'ha' && l.details.context.volume === vol.id)).toBeDefined();
    expect(find((l) => l.action === 'kms.Decrypt' && l.status === 200 && l.caller.host === 'ha' && l.details.context.volume === vol.id)).toBeDefined();
    const bDecrypt = find((l) => l.action === 'kms.Decrypt' && l.status === 200 && l.caller.host === 'hb');
    expect(bDecrypt?.details.context).toEqual({ volume: vol.id });
    expect(bDecrypt?.caller.publicKey).toBe(keyB);
    expect(bDecrypt?.caller.address).toMatch(new RegExp(`^${b.underlayIp.replace(/\./g, '\\.')}:\\d+$`));
    expect(find((l) => l.action === 'kms.GenerateDataKeyWithoutPlaintext' && l.status === 403 && l.error === 'KMS_ACCESS_DENIED' && l.caller.host === 'hb')).toBeDefined();
  });

  it('garbage, replayed and forged records are dropped and counted; the KMS keeps serving', async () => {
    const sodium = await loadSodium();
    const mallory = generateHostKeys(sodium);
    const g = await kmsCli('grant', 'create', '--host', 'mallory', '--public-key', encodeKey(mallory.publicKey), '--key', 'alias/nitride/ebs', '--operations', 'DescribeKey');
    expect(g.code, g.stderr).toBe(0);
    const before = (await kmsStatus()).network!;
    const script = path.join(scratch.dir, 'hostile.mjs');
    writeFileSync(script, HOSTILE_CLIENT);
    const r = await run('ip', ['netns', 'exec', a.ns, process.execPath, script], {
      env: { DIST: path.join(ROOT, 'dist'), KEY: mallory.privateKey.toString('hex'), KMS_PUB: kmsPublicKey, KMS: kmsEndpoint },
      timeoutMs: 90_000,
    });
    mallory.privateKey.fill(0);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { responses: number };
    // one answer for the genuine record and one for the record after the forgery; none for the replay
    expect(out.responses).toBe(2);
    const after = (await kmsStatus()).network!;
    expect(after.records.replayed - before.records.replayed).toBe(1);
    expect(after.records.forged - before.records.forged).toBe(1);
    expect((after.handshakeRejects.malformed ?? 0) - (before.handshakeRejects.malformed ?? 0)).toBe(1);
    // and a real host is still served
    const read = await run('qemu-io', ['-f', 'raw', uri(b, vol.id), '-c', 'read -P 0x5c 0 64k']);
    expect(read.code, read.stderr).toBe(0);
  }, 120_000);

  it('no file or log written holds the data key', async () => {
    const meta = JSON.parse(readFileSync(path.join(a.dir, 'state', 'volumes', `${vol.id}.json`), 'utf8'));
    // unwrap it as root on the KMS's own socket, to know what must never appear
    const { plaintext } = await new KmsClient({ socketPath: kmsSocket }).decrypt(Buffer.from(meta.kms.wrappedKey, 'base64'), { volume: vol.id });
    expect(plaintext.length).toBe(64);
    const needles = keyNeedles(plaintext);
    const files = filesUnder(scratch.dir);
    expect(files.some((f) => f.endsWith(`${vol.id}.img`))).toBe(true);
    expect(files.some((f) => f.endsWith('audit.log'))).toBe(true);
    for (const f of files) for (const n of needles) expect(containsBytes(f, n), f).toBe(false);
    const logs = Buffer.from(kmsOutput + a.output + b.output);
    for (const n of needles) expect(logs.includes(n)).toBe(false);
    plaintext.fill(0);
  });

  it("a host's only GenerateDataKey calls are its ephemeral volumes' keys, none on the start path", async () => {
    const g = await kmsCli('grant', 'create', '--host', 'ha', '--public-key', await hostKey(a), '--key', 'alias/nitride/ebs', '--context', 'volume=vol-*', '--operations', 'GenerateDataKey');
    expect(g.code, g.stderr).toBe(0);
    const generated = () => audit().filter((l) => l.action === 'kms.GenerateDataKey' && l.caller.host === 'ha');
    // the host key is wrapped by the host's own KMS, never the network one
    await a.restartDaemon();
    expect(generated()).toHaveLength(0);
    const eph = await a.json<VolumeInfo>(['volume', 'create', '--type', 'ephemeral', '--size', '8M']);
    await a.restartDaemon();
    // one key per ephemeral image (a crypto-wipe at a VM's stop makes the next); a restart makes none
    expect(generated().map((l) => [l.status, l.details.context])).toEqual([[200, { volume: eph.id, purpose: 'ephemeral-handover' }]]);
  });
});

/**
 * A client with a granted key that misbehaves on the wire: a garbage frame on one connection;
 * then, on a session, a genuine request, the same record again (replay), a tampered record
 * (forgery) and one more genuine request. Prints how many HTTP answers came back.
 */
const HOSTILE_CLIENT = `
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
const dist = process.env.DIST;
const load = (p) => import(pathToFileURL(path.join(dist, p)).href);
const { ChannelInitiator, FrameReader } = await load('kms/channel.js');
const { loadSodium } = await load('kms/sodium.js');
const { publicKeyOf } = await load('vpc/handshake.js');
const sodium = await loadSodium();
const privateKey = Buffer.from(process.env.KEY, 'hex');
const keys = { privateKey, publicKey: publicKeyOf(sodium, privateKey) };
const [host, port] = [process.env.KMS.split(':')[0], Number(process.env.KMS.split(':')[1])];
await new Promise((resolve) => {
  const s = net.connect(port, host, () => s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3])));
  s.on('close', resolve);
  s.on('error', resolve);
});
const s = net.connect(port, host);
const init = new ChannelInitiator(sodium, keys, Buffer.from(process.env.KMS_PUB, 'base64'));
s.on('connect', () => s.write(init.start(Date.now())));
const reader = new FrameReader();
let cipher;
let text = '';
let done = false;
const finish = () => {
  if (done) return;
  done = true;
  console.log(JSON.stringify({ responses: (text.match(/HTTP\\/1\\.1 200/g) || []).length }));
  s.destroy();
};
setTimeout(finish, 60000);
s.on('data', (chunk) => {
  for (const f of reader.push(chunk).frames) {
    if (!cipher) {
      const r = init.finish(f, Date.now());
      if (!r.ok) { console.error(JSON.stringify(r)); process.exit(1); }
      cipher = r.cipher;
      const req = Buffer.from('GET /v1/keys/alias%2Fnitride%2Febs HTTP/1.1\\r\\nHost: kms\\r\\n\\r\\n');
      const [genuine] = cipher.seal(req);
      s.write(genuine);
      s.write(genuine);
      const [next] = cipher.seal(req);
      const forged = Buffer.from(next);
      forged[forged.length - 1] ^= 1;
      s.write(forged);
      const [last] = cipher.seal(req);
      s.write(last);
    } else {
      const r = cipher.open(f);
      if (r.ok) text += r.plaintext.toString();
      if ((text.match(/HTTP\\/1\\.1 200/g) || []).length >= 2) setTimeout(finish, 1000);
    }
  }
});
s.on('close', finish);
`;
