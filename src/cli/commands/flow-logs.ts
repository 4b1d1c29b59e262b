/** `nitride flow-logs …`: AWS version-2 flow logs of an ENI, a subnet or a VPC. */
import { Command } from 'commander';
import { UsageError } from '../../common/errors.js';
import { pathTo, type Deleted } from '../../api/control.js';
import { FLOW_LOG_API, type CreateFlowLogRequest, type FlowLogRecord, type FlowLogRecords } from '../../api/flow-logs.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable } from '../output.js';

const count = (what: string) => (v: string) => {
  if (!/^\d{1,10}$/.test(v)) throw new UsageError(`${what} '${v}' is not a number`);
  return Number(v);
};

export function flowLogsCommand(): Command {
  const fl = new Command('flow-logs').description('flow logs: per-interval records of accepted and rejected traffic (AWS version 2)');
  fl.addCommand(
    clientVerb(new Command('create').description('log the traffic of an ENI, or of every ENI of a subnet or a VPC'))
      .option('--eni <id>', 'one ENI')
      .option('--subnet <id>', 'every ENI of a subnet')
      .option('--vpc <id>', 'every ENI of a VPC')
      .option('--interval <seconds>', 'aggregation interval, 1-600 (default 60)', count('--interval'))
      .option('--max-file-bytes <n>', 'rotate the file before it grows past this (default 10 MiB)', count('--max-file-bytes'))
      .option('--id <id>', 'explicit id (fl- and 17 hex digits), to use the same id on every host')
      .action(async (options: ClientOptions & { eni?: string; subnet?: string; vpc?: string; interval?: number; maxFileBytes?: number; id?: string }) => {
        const targets = [options.eni, options.subnet, options.vpc].filter((x) => x !== undefined);
        if (targets.length !== 1) throw new UsageError('give one of --eni, --subnet or --vpc');
        const body: CreateFlowLogRequest = {
          resourceId: targets[0]!,
          ...(options.interval !== undefined ? { interval: options.interval } : {}),
          ...(options.maxFileBytes !== undefined ? { maxFileBytes: options.maxFileBytes } : {}),
          ...(options.id ? { id: options.id } : {}),
        };
        const r = await clientOf(options).call<FlowLogRecord>('POST', FLOW_LOG_API.flowLogs, body);
        emit(options, r, (x) => renderFields({ id: x.id, resource: x.resourceId, interval: `${x.interval}s`, 'max file bytes': x.maxFileBytes }));
      }),
  );
  fl.addCommand(
    clientVerb(new Command('list').description('list flow logs')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<FlowLogRecord[]>(FLOW_LOG_API.flowLogs);
      emit(options, all, (rows) =>
        rows.length === 0 ? 'no flow logs' : renderTable(rows, { id: (x) => x.id, resource: (x) => x.resourceId, interval: (x) => `${x.interval}s`, 'max file bytes': (x) => x.maxFileBytes }),
      );
    }),
  );
  fl.addCommand(
    clientVerb(new Command('delete').description('stop a flow log (its files stay)').argument('<id>', 'flow log id')).action(async (id: string, options: ClientOptions) => {
      const r = await clientOf(options).call<Deleted>('DELETE', pathTo(FLOW_LOG_API.flowLog, { id }));
      emit(options, r, () => `deleted ${r.id}`);
    }),
  );
  fl.addCommand(
    clientVerb(new Command('tail').description('the newest records this daemon wrote (since it started); the files under the state directory hold the rest'))
      .option('--eni <id>', 'only this ENI\'s')
      .option('-n, --lines <n>', 'how many (default 20)', count('--lines'))
      .option('-f, --follow', 'keep printing new records (Ctrl-C to quit)')
      .action(async (options: ClientOptions & { eni?: string; lines?: number; follow?: boolean }) => {
        const client = clientOf(options);
        const eni = options.eni ? `&eniId=${encodeURIComponent(options.eni)}` : '';
        let after = 0;
        let limit = options.lines ?? 20;
        for (;;) {
          const r = await client.get<FlowLogRecords>(`${FLOW_LOG_API.records}?after=${after}&limit=${limit}${eni}`);
          if (options.json) process.stdout.write(r.records.map((x) => `${JSON.stringify(x)}\n`).join(''));
          else process.stdout.write(r.records.map((x) => `${x.text}\n`).join(''));
          if (!options.follow) break;
          after = r.next;
          limit = 10000;
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }),
  );
  return fl;
}
