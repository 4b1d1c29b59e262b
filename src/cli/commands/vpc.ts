/** `nitride vpc …` and `nitride subnet …`: the VPC model (the same ids may be given on every host). */
import { Command } from 'commander';
import { pathTo, type Deleted } from '../../api/control.js';
import { VPC_API, VPC_DEFAULT_MTU, VPC_MAX_MTU, VPC_MIN_MTU, type CreateSubnetRequest, type CreateVpcRequest, type SubnetInfo, type SubnetRecord, type VpcRecord, type VpcStatsReply } from '../../api/vpc.js';
import { UsageError } from '../../common/errors.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable } from '../output.js';

const bytes = (v: string) => {
  if (!/^\d{1,6}$/.test(v)) throw new UsageError(`'${v}' is not a number of bytes`);
  return Number(v);
};

export function vpcCommand(): Command {
  const vpc = new Command('vpc').description('VPCs (isolated IPv4 networks spanning the hosts) and the VPC data plane');

  vpc.addCommand(
    clientVerb(new Command('create').description('create a VPC'))
      .requiredOption('--cidr <cidr>', 'IPv4 block, /16 to /28, e.g. 172.31.0.0/16')
      .option('--id <id>', 'explicit id (vpc- and 17 hex digits), to use the same id on every host')
      .option('--name <name>', 'a name')
      .option('--mtu <bytes>', `the guests' MTU, ${VPC_MIN_MTU}-${VPC_MAX_MTU} (default ${VPC_DEFAULT_MTU}); hosts of its ENIs need an underlay MTU 74 bytes larger (--vpc-underlay-mtu)`, bytes)
      .action(async (options: ClientOptions & { cidr: string; id?: string; name?: string; mtu?: number }) => {
        const body: CreateVpcRequest = { cidr: options.cidr, ...(options.id ? { id: options.id } : {}), ...(options.name ? { name: options.name } : {}), ...(options.mtu !== undefined ? { mtu: options.mtu } : {}) };
        const r = await clientOf(options).call<VpcRecord>('POST', VPC_API.vpcs, body);
        emit(options, r, (v) => renderFields({ id: v.id, cidr: v.cidr, mtu: v.mtu ?? VPC_DEFAULT_MTU, name: v.name }));
      }),
  );
  vpc.addCommand(
    clientVerb(new Command('list').description('list VPCs')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<VpcRecord[]>(VPC_API.vpcs);
      emit(options, all, (rows) => (rows.length === 0 ? 'no VPCs' : renderTable(rows, { id: (v) => v.id, cidr: (v) => v.cidr, mtu: (v) => v.mtu ?? VPC_DEFAULT_MTU, name: (v) => v.name })));
    }),
  );
  vpc.addCommand(
    clientVerb(new Command('delete').description('delete a VPC (it must have no subnets)').argument('<id>', 'VPC id')).action(async (id: string, options: ClientOptions) => {
      const r = await clientOf(options).call<Deleted>('DELETE', pathTo(VPC_API.vpc, { id }));
      emit(options, r, () => `deleted ${r.id}`);
    }),
  );
  vpc.addCommand(
    clientVerb(new Command('stats').description('data plane counters: per ENI, per peer, underlay, control plane')).action(async (options: ClientOptions) => {
      const s = await clientOf(options).get<VpcStatsReply>(VPC_API.stats);
      // Nested counters: JSON is the readable form too.
      process.stdout.write(JSON.stringify(s, null, 2) + '\n');
    }),
  );
  return vpc;
}

export function subnetCommand(): Command {
  const subnet = new Command('subnet').description('subnets of a VPC');
  subnet.addCommand(
    clientVerb(new Command('create').description('create a subnet'))
      .requiredOption('--vpc <id>', 'VPC id')
      .requiredOption('--cidr <cidr>', 'IPv4 block inside the VPC, /16 to /28')
      .option('--id <id>', 'explicit id (subnet- and 17 hex digits)')
      .option('--name <name>', 'a name')
      .action(async (options: ClientOptions & { vpc: string; cidr: string; id?: string; name?: string }) => {
        const body: CreateSubnetRequest = { vpcId: options.vpc, cidr: options.cidr, ...(options.id ? { id: options.id } : {}), ...(options.name ? { name: options.name } : {}) };
        const r = await clientOf(options).call<SubnetRecord>('POST', VPC_API.subnets, body);
        emit(options, r, (s) => renderFields({ id: s.id, vpc: s.vpcId, cidr: s.cidr, name: s.name }));
      }),
  );
  subnet.addCommand(
    clientVerb(new Command('list').description('list subnets').option('--vpc <id>', 'only this VPC\'s')).action(async (options: ClientOptions & { vpc?: string }) => {
      const all = await clientOf(options).get<SubnetInfo[]>(`${VPC_API.subnets}${options.vpc ? `?vpcId=${encodeURIComponent(options.vpc)}` : ''}`);
      emit(options, all, (rows) =>
        rows.length === 0 ? 'no subnets' : renderTable(rows, { id: (s) => s.id, vpc: (s) => s.vpcId, cidr: (s) => s.cidr, available: (s) => s.available, name: (s) => s.name }),
      );
    }),
  );
  subnet.addCommand(
    clientVerb(new Command('delete').description('delete a subnet (it must have no ENIs)').argument('<id>', 'subnet id')).action(async (id: string, options: ClientOptions) => {
      const r = await clientOf(options).call<Deleted>('DELETE', pathTo(VPC_API.subnet, { id }));
      emit(options, r, () => `deleted ${r.id}`);
    }),
  );
  return subnet;
}
