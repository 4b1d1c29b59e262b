/** `nitride nacl …`: network ACLs (AWS's EC2 verbs): stateless numbered rules per subnet. */
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { pathTo, type Deleted } from '../../api/control.js';
import { NACL_API, type AssociateNaclRequest, type CreateNetworkAclRequest, type DeleteNaclEntryRequest, type NaclEntry, type NetworkAclRecord } from '../../api/network-acls.js';
import type { SgDirection } from '../../api/security-groups.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable } from '../output.js';
import { portOptions, portsOf, ruleText, type PortOptions } from './sg.js';

function render(a: NetworkAclRecord): string {
  const rows = (direction: SgDirection) => {
    const entries = a.entries.filter((e) => e.direction === direction);
    return [`${direction}:`, ...entries.map((e) => `  ${String(e.ruleNumber).padStart(5)} ${e.action.padEnd(5)} ${ruleText(e)}`), '      * deny  all'];
  };
  return [renderFields({ id: a.id, vpc: a.vpcId, default: a.isDefault, subnets: a.subnets.join(', ') || null }), ...rows('ingress'), ...rows('egress')].join('\n');
}

function ruleNumber(text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new UsageError(`--rule-number '${text}' is not a number`);
  return Number(text);
}

/** --ingress or --egress, exactly one. */
function directionOf(o: { ingress?: boolean; egress?: boolean }): SgDirection {
  if (Boolean(o.ingress) === Boolean(o.egress)) throw new UsageError('give one of --ingress or --egress');
  return o.ingress ? 'ingress' : 'egress';
}

const entryVerb = (name: string, what: string) =>
  clientVerb(new Command(name).description(what).argument('<id>', 'network ACL id'))
    .requiredOption('--rule-number <n>', 'rule number, 1-32766 (lowest first)', ruleNumber)
    .option('--ingress', 'an inbound rule')
    .option('--egress', 'an outbound rule');

export function naclCommand(): Command {
  const nacl = new Command('nacl').description('network ACLs: stateless numbered rules per subnet, checked before security groups (AWS semantics)');
  nacl.addCommand(
    clientVerb(new Command('create').description('create an ACL (no entries: it denies everything until you add some)'))
      .requiredOption('--vpc <id>', 'VPC id')
      .option('--id <id>', 'explicit id (acl- and 17 hex digits), to use the same id on every host')
      .action(async (options: ClientOptions & { vpc: string; id?: string }) => {
        const body: CreateNetworkAclRequest = { vpcId: options.vpc, ...(options.id ? { id: options.id } : {}) };
        emit(options, await clientOf(options).call<NetworkAclRecord>('POST', NACL_API.acls, body), render);
      }),
  );
  nacl.addCommand(
    clientVerb(new Command('list').description('list ACLs'))
      .option('--vpc <id>', 'only this VPC\'s')
      .action(async (options: ClientOptions & { vpc?: string }) => {
        const all = await clientOf(options).get<NetworkAclRecord[]>(`${NACL_API.acls}${options.vpc ? `?vpcId=${encodeURIComponent(options.vpc)}` : ''}`);
        emit(options, all, (rows) =>
          rows.length === 0
            ? 'no network ACLs'
            : renderTable(rows, { id: (a) => a.id, vpc: (a) => a.vpcId, default: (a) => (a.isDefault ? 'yes' : 'no'), entries: (a) => a.entries.length, subnets: (a) => a.subnets.join(', ') || null }),
        );
      }),
  );
  nacl.addCommand(
    clientVerb(new Command('describe').description('show an ACL, its entries in evaluation order and its subnets').argument('<id>', 'network ACL id')).action(async (id: string, options: ClientOptions) => {
      emit(options, await clientOf(options).get<NetworkAclRecord>(pathTo(NACL_API.acl, { id })), render);
    }),
  );
  nacl.addCommand(
    clientVerb(new Command('delete').description('delete an ACL no subnet uses').argument('<id>', 'network ACL id')).action(async (id: string, options: ClientOptions) => {
      const r = await clientOf(options).call<Deleted>('DELETE', pathTo(NACL_API.acl, { id }));
      emit(options, r, () => `deleted ${r.id}`);
    }),
  );
  nacl.addCommand(
    portOptions(entryVerb('create-entry', 'add a numbered rule'))
      .requiredOption('--cidr <cidr>', 'peer IPv4 block (source of ingress, destination of egress)')
      .addOption(new Option('--action <action>', 'allow or deny').choices(['allow', 'deny']).makeOptionMandatory())
      .action(async (id: string, options: ClientOptions & PortOptions & { ruleNumber: number; ingress?: boolean; egress?: boolean; cidr: string; action: 'allow' | 'deny' }) => {
        const body: NaclEntry = { ruleNumber: options.ruleNumber, direction: directionOf(options), ...portsOf(options), cidr: options.cidr, action: options.action };
        emit(options, await clientOf(options).call<NetworkAclRecord>('POST', pathTo(NACL_API.entries, { id }), body), render);
      }),
  );
  nacl.addCommand(
    entryVerb('delete-entry', 'remove a numbered rule').action(async (id: string, options: ClientOptions & { ruleNumber: number; ingress?: boolean; egress?: boolean }) => {
      const body: DeleteNaclEntryRequest = { ruleNumber: options.ruleNumber, direction: directionOf(options) };
      emit(options, await clientOf(options).call<NetworkAclRecord>('POST', pathTo(NACL_API.deleteEntry, { id }), body), render);
    }),
  );
  nacl.addCommand(
    clientVerb(new Command('associate').description('make a subnet use this ACL (the default ACL: take it back)').argument('<id>', 'network ACL id'))
      .requiredOption('--subnet <id>', 'subnet id')
      .action(async (id: string, options: ClientOptions & { subnet: string }) => {
        const body: AssociateNaclRequest = { subnetId: options.subnet };
        emit(options, await clientOf(options).call<NetworkAclRecord>('POST', pathTo(NACL_API.associate, { id }), body), render);
      }),
  );
  return nacl;
}
