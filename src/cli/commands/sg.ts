/** `nitride sg …`: security groups (AWS's EC2 verbs) and the connection tracking they keep. */
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { pathTo, type Deleted } from '../../api/control.js';
import {
  SG_API,
  type ConntrackReply,
  type CreateSecurityGroupRequest,
  type FlushConntrackReply,
  type FlushConntrackRequest,
  type SecurityGroupRecord,
  type SgProtocol,
  type SgRule,
} from '../../api/security-groups.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable } from '../output.js';

/** The options that give a rule's protocol and ports (sg and nacl). */
export interface PortOptions {
  protocol: SgProtocol;
  port?: string;
  icmpType?: string;
  icmpCode?: string;
}

interface RuleOptions extends ClientOptions, PortOptions {
  cidr?: string;
  sourceGroup?: string;
  description?: string;
}

export const ruleText = (r: Pick<SgRule, 'protocol' | 'fromPort' | 'toPort'> & { cidr?: string; sourceGroup?: string; description?: string }): string => {
  const ports =
    r.protocol === 'tcp' || r.protocol === 'udp'
      ? r.fromPort === r.toPort
        ? `${r.fromPort}`
        : `${r.fromPort}-${r.toPort}`
      : r.protocol === 'icmp'
        ? `type ${r.fromPort === -1 ? 'any' : r.fromPort} code ${r.toPort === -1 ? 'any' : r.toPort}`
        : 'all';
  return `${r.protocol} ${ports} ${r.cidr ?? r.sourceGroup}${r.description ? ` (${r.description})` : ''}`;
};

function render(g: SecurityGroupRecord): string {
  return [
    renderFields({ id: g.id, name: g.name, vpc: g.vpcId, description: g.description }),
    'ingress:',
    ...(g.ingress.length ? g.ingress.map((r) => `  ${ruleText(r)}`) : ['  (none)']),
    'egress:',
    ...(g.egress.length ? g.egress.map((r) => `  ${ruleText(r)}`) : ['  (none)']),
  ].join('\n');
}

function integer(text: string, what: string): number {
  if (!/^-?\d{1,6}$/.test(text)) throw new UsageError(`${what} '${text}' is not a number`);
  return Number(text);
}

/** The protocol and ports the options describe (the daemon checks ranges). */
export function portsOf(o: PortOptions): Pick<SgRule, 'protocol' | 'fromPort' | 'toPort'> {
  const rule: SgRule = { protocol: o.protocol };
  if (o.port !== undefined) {
    if (o.protocol !== 'tcp' && o.protocol !== 'udp') throw new UsageError('--port is for tcp and udp (icmp: --icmp-type, --icmp-code)');
    const m = /^(\d+)(?:-(\d+))?$/.exec(o.port);
    if (!m) throw new UsageError(`--port '${o.port}' is not a port or a range (22, 8000-8100)`);
    rule.fromPort = Number(m[1]);
    rule.toPort = Number(m[2] ?? m[1]);
  }
  if (o.icmpType !== undefined || o.icmpCode !== undefined) {
    if (o.protocol !== 'icmp') throw new UsageError('--icmp-type and --icmp-code are for --protocol icmp');
    rule.fromPort = o.icmpType === undefined ? -1 : integer(o.icmpType, '--icmp-type');
    rule.toPort = o.icmpCode === undefined ? -1 : integer(o.icmpCode, '--icmp-code');
  }
  return rule;
}

/** The rule the options describe (the daemon checks ranges and CIDRs). */
function ruleOf(o: RuleOptions): SgRule {
  const rule: SgRule = portsOf(o);
  if ((o.cidr === undefined) === (o.sourceGroup === undefined)) throw new UsageError('give one of --cidr or --source-group');
  if (o.cidr !== undefined) rule.cidr = o.cidr;
  if (o.sourceGroup !== undefined) rule.sourceGroup = o.sourceGroup;
  if (o.description !== undefined) rule.description = o.description;
  return rule;
}

/** --protocol, --port, --icmp-type, --icmp-code on a verb. */
export function portOptions(command: Command): Command {
  return command
    .addOption(new Option('--protocol <protocol>', 'tcp, udp, icmp or all').choices(['tcp', 'udp', 'icmp', 'all']).makeOptionMandatory())
    .option('--port <port[-port]>', 'tcp/udp port or range')
    .option('--icmp-type <type>', 'ICMP type (default any)')
    .option('--icmp-code <code>', 'ICMP code (default any)');
}

function ruleVerb(name: keyof typeof SG_API, verb: string, what: string): Command {
  return portOptions(clientVerb(new Command(verb).description(what).argument('<id>', 'security group id')))
    .option('--cidr <cidr>', 'peer IPv4 block (source of ingress, destination of egress)')
    .option('--source-group <id>', 'peer security group of the VPC: its members\' addresses')
    .option('--description <text>', 'rule description')
    .action(async (id: string, options: RuleOptions) => {
      const r = await clientOf(options).call<SecurityGroupRecord>('POST', pathTo(SG_API[name], { id }), ruleOf(options));
      emit(options, r, render);
    });
}

export function sgCommand(): Command {
  const sg = new Command('sg').description('security groups: stateful allow rules per ENI (AWS semantics)');
  sg.addCommand(
    clientVerb(new Command('create').description('create a group (no ingress rules, all egress)'))
      .requiredOption('--vpc <id>', 'VPC id')
      .requiredOption('--name <name>', 'group name, unique in the VPC')
      .option('--description <text>', 'description')
      .option('--id <id>', 'explicit id (sg- and 17 hex digits), to use the same id on every host')
      .action(async (options: ClientOptions & { vpc: string; name: string; description?: string; id?: string }) => {
        const body: CreateSecurityGroupRequest = {
          vpcId: options.vpc,
          name: options.name,
          ...(options.description !== undefined ? { description: options.description } : {}),
          ...(options.id ? { id: options.id } : {}),
        };
        emit(options, await clientOf(options).call<SecurityGroupRecord>('POST', SG_API.groups, body), render);
      }),
  );
  sg.addCommand(
    clientVerb(new Command('list').description('list groups'))
      .option('--vpc <id>', 'only this VPC\'s')
      .action(async (options: ClientOptions & { vpc?: string }) => {
        const all = await clientOf(options).get<SecurityGroupRecord[]>(`${SG_API.groups}${options.vpc ? `?vpcId=${encodeURIComponent(options.vpc)}` : ''}`);
        emit(options, all, (rows) =>
          rows.length === 0
            ? 'no security groups'
            : renderTable(rows, { id: (g) => g.id, name: (g) => g.name, vpc: (g) => g.vpcId, ingress: (g) => g.ingress.length, egress: (g) => g.egress.length }),
        );
      }),
  );
  sg.addCommand(
    clientVerb(new Command('describe').description('show a group and its rules').argument('<id>', 'security group id')).action(async (id: string, options: ClientOptions) => {
      emit(options, await clientOf(options).get<SecurityGroupRecord>(pathTo(SG_API.group, { id })), render);
    }),
  );
  sg.addCommand(
    clientVerb(new Command('delete').description('delete a group no ENI uses').argument('<id>', 'security group id')).action(async (id: string, options: ClientOptions) => {
      const r = await clientOf(options).call<Deleted>('DELETE', pathTo(SG_API.group, { id }));
      emit(options, r, () => `deleted ${r.id}`);
    }),
  );
  sg.addCommand(ruleVerb('authorizeIngress', 'authorize-ingress', 'allow inbound traffic'));
  sg.addCommand(ruleVerb('authorizeEgress', 'authorize-egress', 'allow outbound traffic'));
  sg.addCommand(ruleVerb('revokeIngress', 'revoke-ingress', 'remove an inbound rule (tracked connections continue: see flush-conntrack)'));
  sg.addCommand(ruleVerb('revokeEgress', 'revoke-egress', 'remove an outbound rule (tracked connections continue: see flush-conntrack)'));

  const conntrack = new Command('conntrack').description('flows the security groups track');
  conntrack.addCommand(
    clientVerb(new Command('list').description('tracked flows of a local ENI'))
      .requiredOption('--eni <id>', 'local ENI id')
      .action(async (options: ClientOptions & { eni: string }) => {
        const r = await clientOf(options).get<ConntrackReply>(`${SG_API.conntrack}?eniId=${encodeURIComponent(options.eni)}`);
        emit(options, r, (c) =>
          [
            `${c.count} of at most ${c.max} flows${c.flows.length < c.count ? ` (${c.flows.length} shown)` : ''}`,
            ...(c.flows.length
              ? [
                  renderTable(c.flows, {
                    proto: (f) => f.protocol,
                    local: (f) => `${f.localIp}:${f.localPort}`,
                    remote: (f) => `${f.remoteIp}:${f.remotePort}`,
                    opened: (f) => (f.direction === 'egress' ? 'out' : 'in'),
                    state: (f) => f.state,
                    expires: (f) => `${f.expiresIn}s`,
                    'pkts out/in': (f) => `${f.packetsOut}/${f.packetsIn}`,
                  }),
                ]
              : []),
          ].join('\n'),
        );
      }),
  );
  sg.addCommand(conntrack);
  sg.addCommand(
    clientVerb(new Command('flush-conntrack').description('forget tracked flows (their next packets are judged by the rules, which cuts connections no rule allows)'))
      .option('--eni <id>', 'one local ENI (default: all)')
      .action(async (options: ClientOptions & { eni?: string }) => {
        const body: FlushConntrackRequest = options.eni ? { eniId: options.eni } : {};
        const r = await clientOf(options).call<FlushConntrackReply>('POST', SG_API.flushConntrack, body);
        emit(options, r, () => `flushed ${r.flushed} flows`);
      }),
  );
  return sg;
}
