/** `nitride status` rendering (pure): a full connection-tracking table is called out. */
import { describe, expect, it } from 'vitest';
import { renderStatusReport, type StatusReport } from '../../src/cli/commands/status.js';
import type { EniInfo, VpcPortStats } from '../../src/api/vpc.js';

const port = (flows: number, max: number): VpcPortStats => ({
  rxFrames: 1,
  rxBytes: 1,
  txFrames: 1,
  txBytes: 1,
  drops: { spoofed: 0, noRoute: 0, oversize: 0, punted: 0, puntOverflow: 0, filtered: 0, invalid: 0, txError: 0, queueFull: 0, securityGroup: 0, conntrackFull: flows >= max ? 7 : 0, networkAcl: 0, bwInAllowanceExceeded: 0, bwOutAllowanceExceeded: 0, ppsAllowanceExceeded: 0 },
  conntrack: { flows, max },
});
const eni = (id: string): EniInfo => ({ id, vpcId: 'vpc-0a1b2c3d4e5f60718', subnetId: 'subnet-0a1b2c3d4e5f60718', mac: '02:00:00:00:00:01', privateIp: '10.0.0.4', sourceDestCheck: true, hostInterface: 'ni0', guestInterface: null, hostId: 'local', kind: 'tap', securityGroups: [] });

function report(stats: Record<string, VpcPortStats>): StatusReport {
  return {
    version: '0', pid: 1, startedAt: '', uptimeSeconds: 5, stateDir: '/s', controlSocket: '/c', configFile: null, logLevel: 'info', node: 'v20', health: 'ok', problems: [],
    nbd: { socket: '/n', tcp: null, connections: 0, guestPeersRefused: 0 }, kmsSocket: '/k', kmsEndpoint: null, metrics: { tcp: null },
    volumes: { total: 0, inUse: 0, ebs: 0, ephemeral: 0, ephemeralHandover: { via: 'none', kept: 0 } }, vms: { total: 0, running: 0 },
    ceph: null, fleet: null,
    vpc: { enabled: true, state: 'up', message: null, listen: '127.0.0.1:0', port: 1, publicKey: null, underlayMtu: 1500, maxVpcMtu: 1426, vpcs: 1, subnets: 1, enis: { total: 2, local: 2 }, peers: [] },
    details: { volumes: [], enis: Object.keys(stats).map(eni), peers: [], vpcStats: { enis: stats, peers: {}, underlay: {} as never, worker: { pollsWon: 0, pollsLost: 0, cipher: 'openssl' } } },
  };
}

describe('status rendering', () => {
  it('says which ENIs have a full conntrack table (new flows dropped), and only those', () => {
    const text = renderStatusReport(report({ 'eni-0000000000000000a': port(10, 10), 'eni-0000000000000000b': port(3, 10) }));
    expect(text).toMatch(/^conntrack full:\s+eni-0000000000000000a \(10 flows\): new flows dropped$/m);
    expect(text).toMatch(/^eni-0000000000000000a .* 10\/10 full .*conntrackFull 7/m);
    expect(text).toMatch(/^eni-0000000000000000b .* 3\/10 /m);
    expect(renderStatusReport(report({ 'eni-0000000000000000b': port(3, 10) }))).not.toMatch(/conntrack full|full/);
  });

  it('says how ephemeral volumes cross a daemon restart, and that they do not without the fd store', () => {
    const r = report({});
    expect(renderStatusReport(r)).toMatch(/^ephemeral handover:\s+none \(no systemd fd store\): ephemeral volumes are wiped when the daemon stops or crashes$/m);
    r.volumes.ephemeralHandover = { via: 'fd-store', kept: 2 };
    expect(renderStatusReport(r)).toMatch(/^ephemeral handover:\s+systemd fd store \(2 kept\)/m);
  });
});
