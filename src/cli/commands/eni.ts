/** `nitride eni …`: elastic network interfaces (local: a TAP or veth netdev; remote: a record of another host's ENI). */
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { formatBitRate, parseBitRate, parseCount } from '../../common/units.js';
import { pathTo, type Deleted } from '../../api/control.js';
import { LOCAL_HOST_ID, VPC_API, type CreateEniRequest, type EniInfo, type ModifyEniRequest, type VpcNamedStats, type VpcPortStats } from '../../api/vpc.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable } from '../output.js';

interface CreateOptions extends ClientOptions {
  subnet: string;
  ip?: string;
  mac?: string;
  id?: string;
  host?: string;
  kind?: 'tap' | 'veth';
  ifname?: string;
  sourceDestCheck: boolean;
  groups?: string[];
  tcpEstablishedTimeout?: number;
  bandwidth?: string;
  pps?: string;
}

/** --bandwidth / --pps as the request carries them; `unlimited` (modify only) is null. */
function allowanceOf(o: { bandwidth?: string; pps?: string }, removable: boolean): { bandwidth?: number | null; pps?: number | null } {
  const out: { bandwidth?: number | null; pps?: number | null } = {};
  const unlimited = (t: string) => removable && t.trim().toLowerCase() === 'unlimited';
  if (o.bandwidth !== undefined) out.bandwidth = unlimited(o.bandwidth) ? null : parseBitRate(o.bandwidth, '--bandwidth');
  if (o.pps !== undefined) out.pps = unlimited(o.pps) ? null : parseCount(o.pps, '--pps');
  return out;
}

const seconds = (v: string) => {
  if (!/^\d{1,7}$/.test(v)) throw new UsageError(`'${v}' is not a number of seconds`);
  return Number(v);
};

const groupList = (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean);

/** `stats`: a local ENI's counters (describe), for the frames its allowances dropped. */
function render(e: EniInfo, stats?: VpcPortStats): string {
  return renderFields({
    id: e.id,
    mac: e.mac,
    ip: e.privateIp,
    ifname: e.hostInterface,
    'guest ifname': e.guestInterface,
    kind: e.kind,
    host: e.hostId,
    vpc: e.vpcId,
    subnet: e.subnetId,
    'source/dest check': e.sourceDestCheck,
    'security groups': e.securityGroups.join(', '),
    'tcp established timeout': `${e.tcpEstablishedTimeout ?? 432000}s`,
    bandwidth: e.bandwidth !== undefined ? `${formatBitRate(e.bandwidth)} each way` : 'unlimited',
    pps: e.pps !== undefined ? `${e.pps} each way` : 'unlimited',
    'allowance exceeded': stats && `bw_in ${stats.drops.bwInAllowanceExceeded}, bw_out ${stats.drops.bwOutAllowanceExceeded}, pps ${stats.drops.ppsAllowanceExceeded} frames queued or dropped`,
  });
}

export function eniCommand(): Command {
  const eni = new Command('eni').description('network interfaces of the VPC');

  eni.addCommand(
    clientVerb(new Command('create').description('create an ENI; prints {id, mac, ip, ifname, kind, host}'))
      .requiredOption('--subnet <id>', 'subnet id')
      .option('--ip <ip>', 'private IPv4 (default: the lowest free address)')
      .option('--mac <mac>', 'MAC address (default: random, locally administered)')
      .option('--id <id>', 'explicit id (eni- and 17 hex digits), to use the same id on every host')
      .option('--host <peer>', 'the peer hosting it (a remote ENI record); default: this host')
      .addOption(new Option('--kind <kind>', 'local netdev: tap (for QEMU, default) or veth (<ifname> + <ifname>p for a netns guest)').choices(['tap', 'veth']))
      .option('--ifname <name>', 'host-side netdev name (default ni + 8 hex digits of the id)')
      .option('--no-source-dest-check', 'let the guest send with other source addresses (routers, NAT)')
      .option('--groups <sg,...>', '1-5 security groups (default: the VPC\'s default group)', groupList)
      .option('--tcp-established-timeout <seconds>', 'idle timeout of tracked established TCP flows, 60-432000 (default 432000, 5 days)', seconds)
      .option('--bandwidth <rate>', 'bandwidth allowance each way (into and out of the guest), e.g. 200Mbit, 1Gbit; over it frames drop (default unlimited)')
      .option('--pps <n>', 'packet allowance each way, packets per second, e.g. 100000 or 100k (default unlimited)')
      .action(async (options: CreateOptions) => {
        const body: CreateEniRequest = {
          subnetId: options.subnet,
          ...(options.ip ? { privateIp: options.ip } : {}),
          ...(options.mac ? { mac: options.mac } : {}),
          ...(options.id ? { id: options.id } : {}),
          ...(options.host ? { hostId: options.host } : {}),
          ...(options.kind ? { kind: options.kind } : {}),
          ...(options.ifname ? { hostInterface: options.ifname } : {}),
          ...(options.sourceDestCheck === false ? { sourceDestCheck: false } : {}),
          ...(options.groups ? { securityGroups: options.groups } : {}),
          ...(options.tcpEstablishedTimeout !== undefined ? { tcpEstablishedTimeout: options.tcpEstablishedTimeout } : {}),
          ...(allowanceOf(options, false) as { bandwidth?: number; pps?: number }),
        };
        const r = await clientOf(options).call<EniInfo>('POST', VPC_API.enis, body);
        emit(options, r, render);
      }),
  );

  eni.addCommand(
    clientVerb(new Command('list').description('list ENIs')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<EniInfo[]>(VPC_API.enis);
      emit(options, all, (rows) =>
        rows.length === 0
          ? 'no ENIs'
          : renderTable(rows, {
              id: (e) => e.id,
              ip: (e) => e.privateIp,
              mac: (e) => e.mac,
              host: (e) => e.hostId,
              kind: (e) => e.kind,
              ifname: (e) => (e.hostId === LOCAL_HOST_ID ? e.hostInterface : null),
              subnet: (e) => e.subnetId,
              'src/dst check': (e) => (e.sourceDestCheck ? 'on' : 'off'),
            }),
      );
    }),
  );

  eni.addCommand(
    clientVerb(new Command('describe').description('show one ENI').argument('<id>', 'ENI id')).action(async (id: string, options: ClientOptions) => {
      const client = clientOf(options);
      const e = await client.get<EniInfo>(pathTo(VPC_API.eni, { id }));
      // The VPC may be down (stats 503): the record alone then.
      const stats = options.json || e.hostId !== LOCAL_HOST_ID ? null : await client.get<VpcNamedStats>(VPC_API.stats).catch(() => null);
      emit(options, e, (x) => render(x, stats?.enis[x.id]));
    }),
  );

  eni.addCommand(
    clientVerb(new Command('modify').description('change an ENI').argument('<id>', 'ENI id'))
      .addOption(new Option('--source-dest-check <on|off>', 'source/destination check').choices(['on', 'off']))
      .option('--groups <sg,...>', 'replace its security groups (1-5); tracked flows continue', groupList)
      .option('--tcp-established-timeout <seconds>', 'idle timeout of tracked established TCP flows, 60-432000', seconds)
      .option('--bandwidth <rate|unlimited>', 'bandwidth allowance each way, e.g. 200Mbit (applies to the next frame)')
      .option('--pps <n|unlimited>', 'packet allowance each way, packets per second')
      .action(async (id: string, options: ClientOptions & { sourceDestCheck?: 'on' | 'off'; groups?: string[]; tcpEstablishedTimeout?: number; bandwidth?: string; pps?: string }) => {
        if (options.sourceDestCheck === undefined && options.groups === undefined && options.tcpEstablishedTimeout === undefined && options.bandwidth === undefined && options.pps === undefined) {
          throw new UsageError('nothing to change: give --source-dest-check on|off, --groups, --tcp-established-timeout, --bandwidth or --pps');
        }
        const body: ModifyEniRequest = {
          ...(options.sourceDestCheck !== undefined ? { sourceDestCheck: options.sourceDestCheck === 'on' } : {}),
          ...(options.groups ? { securityGroups: options.groups } : {}),
          ...(options.tcpEstablishedTimeout !== undefined ? { tcpEstablishedTimeout: options.tcpEstablishedTimeout } : {}),
          ...allowanceOf(options, true),
        };
        const r = await clientOf(options).call<EniInfo>('PATCH', pathTo(VPC_API.eni, { id }), body);
        emit(options, r, render);
      }),
  );

  eni.addCommand(
    clientVerb(new Command('move').description('place an ENI on another host of the fleet; every host follows').argument('<id>', 'ENI id'))
      .requiredOption('--host <host>', 'the host id it moves to')
      .action(async (id: string, options: ClientOptions & { host: string }) => {
        const body: ModifyEniRequest = { hostId: options.host };
        const r = await clientOf(options).call<EniInfo>('PATCH', pathTo(VPC_API.eni, { id }), body);
        emit(options, r, render);
      }),
  );

  eni.addCommand(
    clientVerb(new Command('delete').description('delete an ENI (a local one\'s netdev goes too)').argument('<id>', 'ENI id')).action(async (id: string, options: ClientOptions) => {
      const r = await clientOf(options).call<Deleted>('DELETE', pathTo(VPC_API.eni, { id }));
      emit(options, r, () => `deleted ${r.id}`);
    }),
  );
  return eni;
}
