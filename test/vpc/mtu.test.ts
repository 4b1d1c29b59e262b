/**
 * Per-VPC MTUs through the VPC manager (in-memory engine and netdevs; the real guests' jumbo
 * frames are in test/daemon/vpc.test.ts): the model's bounds, what the state file keeps, and
 * the underlay's limit on local ENIs.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VPC_DEFAULT_MTU } from '../../src/api/vpc.js';
import { UsageError } from '../../src/common/errors.js';
import { LocalKeyProvider } from '../../src/kms/local.js';
import { createLogger } from '../../src/log/logger.js';
import { VpcManager } from '../../src/vpc/manager.js';
import { VpcModel } from '../../src/vpc/model.js';
import { FakeEngine, FakeNetdevs } from './fakes.js';
import { tempDir } from '../helpers/nitride.js';

let kms: LocalKeyProvider;
const dirs: Array<{ cleanup: () => void }> = [];
const managers: VpcManager[] = [];

beforeAll(async () => {
  kms = await LocalKeyProvider.open({ sweepIntervalMs: 0 });
});
afterAll(async () => {
  for (const m of managers) await m.close();
  await kms?.close();
  for (const d of dirs) d.cleanup();
});

async function manager(stateFile: string, underlayMtu?: number): Promise<{ vpc: VpcManager; netdevs: FakeNetdevs; engine: () => FakeEngine }> {
  let engine: FakeEngine | undefined;
  const netdevs = new FakeNetdevs();
  const vpc = new VpcManager({
    stateFile,
    kms,
    logger: createLogger({ level: 'silent' }),
    listen: '127.0.0.1:4789',
    engine: (opts) => (engine = new FakeEngine(opts)),
    netdevs,
    ...(underlayMtu !== undefined ? { underlayMtu } : {}),
  });
  managers.push(vpc);
  await vpc.load();
  await vpc.start();
  return { vpc, netdevs, engine: () => engine! };
}

describe('VPC MTU', () => {
  it('the model: default, bounds, stored only when given', () => {
    const m = new VpcModel({ localHostId: 'local' });
    const plain = m.createVpc({ cidr: '10.0.0.0/16' });
    expect(plain.mtu).toBeUndefined();
    expect(m.vpcMtu(plain.id)).toBe(VPC_DEFAULT_MTU);
    expect(m.vpcMtu(m.createVpc({ cidr: '10.1.0.0/16', mtu: 9001 }).id)).toBe(9001);
    expect(m.vpcMtu(m.createVpc({ cidr: '10.2.0.0/16', mtu: 1280 }).id)).toBe(1280);
    for (const bad of [1279, 9002, 1500.5, NaN]) {
      expect(() => m.createVpc({ cidr: '10.3.0.0/16', mtu: bad })).toThrow(UsageError);
      expect(() => m.createVpc({ cidr: '10.3.0.0/16', mtu: bad })).toThrow(/MTU .* is not a whole number in 1280-9001/);
    }
    expect(m.listVpcs()).toHaveLength(3);
  });

  it('a local ENI needs an underlay that carries its VPC; a remote one does not; kept across a restart', async () => {
    const d = tempDir('nitride-mtu-');
    dirs.push(d);
    const stateFile = path.join(d.dir, 'vpc.json');
    const { vpc } = await manager(stateFile);
    expect(vpc.status()).toMatchObject({ underlayMtu: 1500, maxVpcMtu: 1426 });
    const jumbo = await vpc.createVpc({ cidr: '10.0.0.0/16', mtu: 9001 });
    expect(jumbo.mtu).toBe(9001);
    const { id: subnetId } = await vpc.createSubnet({ vpcId: jumbo.id, cidr: '10.0.1.0/24' });
    await expect(vpc.createEni({ subnetId, privateIp: '10.0.1.10' })).rejects.toThrow(`VPC ${jumbo.id} has MTU 9001, which needs an underlay MTU of 9075; this host's carries 1500 (--vpc-underlay-mtu)`);
    expect(vpc.listEnis()).toEqual([]);
    const remote = await vpc.createEni({ subnetId, privateIp: '10.0.1.20', hostId: 'hb' });
    expect(remote.hostId).toBe('hb');
    await vpc.close();

    // The state file keeps the MTU; a host whose underlay carries it hosts the ENI.
    expect(JSON.parse(readFileSync(stateFile, 'utf8')).model.vpcs).toEqual([{ id: jumbo.id, cidr: '10.0.0.0/16', mtu: 9001 }]);
    const again = await manager(stateFile, 9075);
    expect(again.vpc.status()).toMatchObject({ underlayMtu: 9075, maxVpcMtu: 9001 });
    expect(again.vpc.listVpcs()).toEqual([{ id: jumbo.id, cidr: '10.0.0.0/16', mtu: 9001 }]);
    const local = await again.vpc.createEni({ subnetId, privateIp: '10.0.1.10', kind: 'veth' });
    expect(again.netdevs.devices.has(local.hostInterface)).toBe(true);
    const engine = again.engine();
    expect([...engine.ports.values()].map((p) => p.opts.mtu)).toEqual([9001]);
  });
});
