/** Flow logs: the records (resources, checks, persistence), the version-2 format, the writer's rotation and tail ring, the collector's intervals. */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ID_PATTERNS } from '../../src/api/ids.js';
import { NotFoundError, UsageError } from '../../src/common/errors.js';
import { createLogger } from '../../src/log/logger.js';
import type { VpcFlowLogTake } from '../../src/native/addon.js';
import { FlowLogCollector } from '../../src/vpc/flow-log-collector.js';
import { FlowLogWriter } from '../../src/vpc/flow-log-writer.js';
import { formatFlowRecords } from '../../src/vpc/flow-logs.js';
import { VpcModel } from '../../src/vpc/model.js';
import { tempDir } from '../helpers/nitride.js';

const VPC = 'vpc-0a1b2c3d4e5f60718';
const log = createLogger({ level: 'silent' });
const scratch = tempDir('nitride-flowlog-');
afterAll(() => scratch.cleanup());

function setup() {
  const model = new VpcModel({ localHostId: 'local' });
  model.createVpc({ cidr: '10.0.0.0/16', id: VPC });
  const subnet = model.createSubnet({ vpcId: VPC, cidr: '10.0.1.0/24' }).id;
  const eni = model.createEni({ subnetId: subnet });
  return { model, subnet, eni };
}

const take = (flows: Partial<VpcFlowLogTake['flows'][number]>[], dropped = 0): VpcFlowLogTake => ({
  dropped,
  flows: flows.map((f) => ({ srcaddr: '10.0.1.4', dstaddr: '10.0.1.5', srcport: 40000, dstport: 53, protocol: 17, packets: 1, bytes: 29, start: 1_700_000_000_500, end: 1_700_000_001_900, accept: true, ...f })),
});

describe('flow log records', () => {
  it('of an ENI, a subnet or a VPC: which cover an ENI; checked; deleted with their resource; persisted', () => {
    const { model, subnet, eni } = setup();
    const byEni = model.createFlowLog({ resourceId: eni.id });
    expect(byEni).toMatchObject({ resourceType: 'eni', resourceId: eni.id, interval: 60, maxFileBytes: 10 * 1024 * 1024 });
    expect(byEni.id).toMatch(ID_PATTERNS.flowLog);
    model.createFlowLog({ resourceId: subnet, interval: 5, id: 'fl-0000000000000000a' });
    model.createFlowLog({ resourceId: VPC, interval: 600, maxFileBytes: 4096 });
    expect(model.flowLogs.covering(eni).map((f) => f.resourceType).sort()).toEqual(['eni', 'subnet', 'vpc']);
    expect(() => model.createFlowLog({ resourceId: 'eni-99999999999999999' })).toThrow(NotFoundError);
    expect(() => model.createFlowLog({ resourceId: 'vol-99999999999999999' })).toThrow(/not an ENI, subnet or VPC id/);
    expect(() => model.createFlowLog({ resourceId: eni.id, interval: 601 })).toThrow(/interval 601 is not in 1-600/);
    expect(() => model.createFlowLog({ resourceId: eni.id, maxFileBytes: 100 })).toThrow(UsageError);
    expect(() => model.createFlowLog({ resourceId: eni.id, id: 'fl-0000000000000000a' })).toThrow(/already exists/);
    const back = VpcModel.fromJSON(JSON.parse(JSON.stringify(model.toJSON())), { localHostId: 'local' });
    expect(back.flowLogs.list()).toEqual(model.flowLogs.list());
    model.deleteEni(eni.id);
    expect(model.flowLogs.list().map((f) => f.resourceType).sort()).toEqual(['subnet', 'vpc']);
    model.deleteSubnet(subnet);
    model.deleteVpc(VPC);
    expect(model.flowLogs.list()).toEqual([]);
  });

  it('formats AWS version-2 records (Unix seconds), REJECT for denied traffic, SKIPDATA when the table was full', () => {
    expect(formatFlowRecords('eni-0000000000000000a', take([{}, { srcaddr: '10.0.2.9', protocol: 1, srcport: 0, dstport: 0, packets: 3, bytes: 252, accept: false, start: 1_700_000_000_000 }], 7), 1_699_999_999_000, 1_700_000_002_000)).toEqual([
      '2 - eni-0000000000000000a 10.0.2.9 10.0.1.5 0 0 1 3 252 1700000000 1700000001 REJECT OK',
      '2 - eni-0000000000000000a 10.0.1.4 10.0.1.5 40000 53 17 1 29 1700000000 1700000001 ACCEPT OK',
      '2 - eni-0000000000000000a - - - - - - - 1699999999 1700000002 - SKIPDATA',
    ]);
  });
});

describe('flow log writer and collector', () => {
  it('rotates before a file would pass its size, keeping whole records and four old files; tail sees each record once', async () => {
    const writer = new FlowLogWriter(scratch.dir, log);
    const fl = { id: 'fl-0000000000000000c', resourceType: 'eni' as const, resourceId: 'eni-0000000000000000a', interval: 1, maxFileBytes: 1024 };
    const other = { ...fl, id: 'fl-0000000000000000d', maxFileBytes: 1024 * 1024 };
    const line = (i: number) => `2 - eni-0000000000000000a 10.0.1.4 10.0.1.5 ${40000 + i} 53 17 1 29 1700000000 1700000001 ACCEPT OK`;
    for (let i = 0; i < 100; i += 10) writer.write('eni-0000000000000000a', [fl, other], Array.from({ length: 10 }, (_, j) => line(i + j)));
    await writer.flush();
    const file = writer.file(fl.id);
    const kept = [file, `${file}.1`, `${file}.2`, `${file}.3`, `${file}.4`];
    for (const f of kept) {
      const text = readFileSync(f, 'utf8');
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024);
      expect(text.split('\n').filter(Boolean).every((l) => l.split(' ').length === 14)).toBe(true);
    }
    expect(existsSync(`${file}.5`)).toBe(false);
    const newest = readFileSync(file, 'utf8').trim().split('\n');
    expect(newest.at(-1)).toBe(line(99));
    expect(readFileSync(writer.file(other.id), 'utf8').trim().split('\n')).toHaveLength(100);
    const r = writer.records({ limit: 5 });
    expect(r.records.map((x) => x.text)).toEqual([95, 96, 97, 98, 99].map(line));
    expect(r.next).toBe(100);
    expect(writer.records({ after: 100 }).records).toEqual([]);
    expect(writer.records({ eniId: 'eni-0000000000000000b' }).records).toEqual([]);
  });

  it('turns an ENI\'s counters on while a flow log covers it, drains them every interval (the shortest), and once more when turned off', () => {
    const calls: Array<[string, number, number?]> = [];
    let now = 1_700_000_000_000;
    const pending = new Map<number, VpcFlowLogTake>();
    const engine = {
      setFlowLog: (port: number, max: number) => void calls.push(['set', port, max]),
      takeFlowLog: (port: number) => {
        calls.push(['take', port]);
        const t = pending.get(port) ?? take([]);
        pending.delete(port);
        return t;
      },
    };
    const writer = new FlowLogWriter(scratch.dir, log);
    const collector = new FlowLogCollector(engine, writer, () => now);
    const eni = { id: 'eni-0000000000000000e', subnetId: 'subnet-0000000000000000e', vpcId: VPC };
    const fl = (id: string, interval: number) => ({ id, resourceType: 'eni' as const, resourceId: eni.id, interval, maxFileBytes: 1 << 20 });
    collector.apply([{ eni, portId: 3, logs: [fl('fl-0000000000000000e', 60), fl('fl-0000000000000000f', 5)] }]);
    expect(calls).toEqual([['set', 3, 65536]]);
    pending.set(3, take([{ packets: 4 }]));
    now += 4000;
    (collector as unknown as { tick(): void }).tick();
    expect(calls).toHaveLength(1); // not yet 5 s
    now += 1000;
    (collector as unknown as { tick(): void }).tick();
    expect(calls.at(-1)).toEqual(['take', 3]);
    expect(writer.records({ eniId: eni.id }).records.map((r) => r.text.split(' ')[8])).toEqual(['4']);
    pending.set(3, take([{ packets: 2 }]));
    collector.apply([{ eni, portId: 3, logs: [] }]);
    expect(calls.slice(-2)).toEqual([['take', 3], ['set', 3, 0]]);
    expect(writer.records({ eniId: eni.id }).records.map((r) => r.text.split(' ')[8])).toEqual(['4', '2']);
    collector.stop();
  });
});
