/** The VPC state file: what is saved comes back on load; a model change whose save fails is rolled back; a bad file is refused. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCAL_HOST_ID } from '../../src/api/vpc.js';
import { VpcStateStore } from '../../src/vpc/state-store.js';
import { tempDir } from '../helpers/nitride.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function file(): string {
  const { dir, cleanup } = tempDir();
  cleanups.push(cleanup);
  return path.join(dir, 'vpc.json');
}

describe('VPC state store', () => {
  it('saves the model, the ENI kinds, the peers and the host key blob, and loads them back', async () => {
    const f = file();
    const store = new VpcStateStore(f);
    const vpc = await store.change((m) => m.createVpc({ cidr: '10.0.0.0/16' }));
    const subnet = await store.change((m) => m.createSubnet({ vpcId: vpc.id, cidr: '10.0.1.0/24' }));
    const eni = store.model.createEni({ subnetId: subnet.id, hostId: LOCAL_HOST_ID });
    store.setKind(eni.id, 'veth');
    store.setPeer({ name: 'b', endpoint: '127.0.0.1:4790', publicKey: 'k', plaintext: false });
    store.hostKeyBlob = 'YmxvYg==';
    await store.save();

    const loaded = new VpcStateStore(f);
    await loaded.load();
    expect(loaded.model.listEnis()).toEqual([eni]);
    expect(loaded.kind(eni.id)).toBe('veth');
    expect(loaded.peers()).toEqual([{ name: 'b', endpoint: '127.0.0.1:4790', publicKey: 'k', plaintext: false }]);
    expect(loaded.hostKeyBlob).toBe('YmxvYg==');
    // The directory follows the model (ARP answers from it).
    expect(loaded.directory.lookupById(eni.id)?.mac).toBe(eni.mac);
  });

  it('a missing file is an empty state', async () => {
    const store = new VpcStateStore(file());
    await store.load();
    expect(store.model.listVpcs()).toEqual([]);
    expect(store.peers()).toEqual([]);
    expect(store.hostKeyBlob).toBeUndefined();
  });

  it('rolls a model change back when it cannot be saved, and the directory follows the restored model', async () => {
    const store = new VpcStateStore(path.join(file(), 'missing-dir', 'vpc.json'));
    await expect(store.change((m) => m.createVpc({ cidr: '10.0.0.0/16' }))).rejects.toThrow(/ENOENT/);
    expect(store.model.listVpcs()).toEqual([]);
    expect(store.directory.list()).toEqual([]);
  });

  it('refuses a state file of another shape with one line naming the file', async () => {
    const f = file();
    writeFileSync(f, JSON.stringify({ version: 2, model: {}, kinds: {}, peers: [] }));
    await expect(new VpcStateStore(f).load()).rejects.toThrow(`${f}: invalid VPC state`);
  });
});
