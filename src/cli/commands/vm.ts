/** `nitride vm …`: QEMU guests with nitride volumes (NVMe) and ENIs (virtio-net). */
import path from 'node:path';
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { parseSize } from '../../common/units.js';
import { pathTo, type Deleted } from '../../api/control.js';
import { START_TIMEOUT_S, VMS_API, startTimeoutError, type ConsoleReply, type QemuArgsReply, type RunVmRequest, type StartVmRequest, type StopVmRequest, type VmInfo } from '../../api/vms.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable, shellQuote } from '../output.js';

interface RunOptions extends ClientOptions {
  name: string;
  kernel: string;
  initrd?: string;
  append?: string;
  volume: string[];
  eni: string[];
  memory: string;
  cpus: string;
  accel: 'tcg' | 'kvm';
  forceAttach?: boolean;
  startTimeout?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** `vm run` and `vm qemu-args` take the same description of a guest. */
function guestOptions(command: Command): Command {
  return command
    .requiredOption('--kernel <file>', 'guest kernel (must be on the image allowlist)')
    .option('--initrd <file>', 'initramfs (must be on the image allowlist)')
    .option('--append <cmdline>', 'kernel command line (default: console=ttyS0 panic=-1)')
    .option('--volume <vol-id[:boot]>', 'attach a volume as an NVMe disk (serial = volume id); repeatable', collect, [])
    .option('--eni <eni-id>', 'attach a local TAP ENI as a virtio-net NIC; repeatable', collect, [])
    .option('--memory <size>', 'guest memory, e.g. 512M', '512M')
    .option('--cpus <n>', 'virtual CPUs', '1')
    .addOption(new Option('--accel <accel>', 'tcg (default: KVM hangs on some hosts) or kvm').choices(['tcg', 'kvm']).default('tcg'));
}

const START_TIMEOUT_HELP = `seconds to wait for QEMU to answer QMP (${START_TIMEOUT_S.min}-${START_TIMEOUT_S.max}, default ${START_TIMEOUT_S.default}); past it QEMU is stopped and the command fails`;

/** --start-timeout as the request field (absent: the daemon's default). */
const FORCE_ATTACH_HELP = 'take over rbd volumes another host holds: fence it first (Ceph blocklist, as volume detach --force)';

function startTimeoutOf(value: string | undefined): { startTimeoutS?: number } {
  if (value === undefined) return {};
  const seconds = /^\d+$/.test(value) ? Number(value) : NaN;
  const error = startTimeoutError(seconds);
  if (error) throw new UsageError(`${error}, got '${value}'`);
  return { startTimeoutS: seconds };
}

/** How long the CLI waits for `vm run|start`: the QMP wait plus room for the checks before and the cleanup after it. */
const startCallMs = (body: { startTimeoutS?: number }) => ((body.startTimeoutS ?? START_TIMEOUT_S.default) + 60) * 1000;

function bodyOf(options: RunOptions): RunVmRequest {
  const memory = parseSize(options.memory);
  if (memory % (1 << 20) !== 0) throw new UsageError('--memory must be a whole number of MiB');
  const cpus = Number(options.cpus);
  if (!Number.isInteger(cpus)) throw new UsageError('--cpus must be an integer');
  return {
    name: options.name ?? 'qemu-args',
    kernel: path.resolve(options.kernel),
    ...(options.initrd ? { initrd: path.resolve(options.initrd) } : {}),
    ...(options.append !== undefined ? { append: options.append } : {}),
    memoryMiB: memory / (1 << 20),
    cpus,
    accel: options.accel,
    volumes: options.volume,
    enis: options.eni,
    ...(options.forceAttach ? { forceAttach: true } : {}),
    ...startTimeoutOf(options.startTimeout),
  };
}

function render(v: VmInfo): string {
  return renderFields({
    id: v.id,
    name: v.name,
    state: v.state,
    pid: v.pid,
    accel: v.accel,
    memory: `${v.memoryMiB} MiB`,
    cpus: v.cpus,
    kernel: `${v.kernel.name} (sha256 ${v.kernel.sha256.slice(0, 16)}…)`,
    initrd: v.initrd ? `${v.initrd.name} (sha256 ${v.initrd.sha256.slice(0, 16)}…)` : null,
    append: v.append,
    volumes: v.volumes.length ? v.volumes.map((x) => x.id + (x.boot ? ' (boot)' : '')).join(', ') : '-',
    enis: v.enis.length ? v.enis.join(', ') : '-',
    console: v.consoleLog,
    stopped: v.stoppedAt ? `${v.stoppedAt} (${v.stopReason}${v.wiped.length ? `; wiped ${v.wiped.join(', ')}` : ''})` : null,
  });
}

export function vmCommand(): Command {
  const vm = new Command('vm').description('QEMU guests: nitride volumes as NVMe disks, ENIs as NICs');

  vm.addCommand(
    guestOptions(clientVerb(new Command('run').description('start a guest; the daemon launches QEMU').requiredOption('--name <name>', 'VM name')))
      .option('--force-attach', FORCE_ATTACH_HELP)
      .option('--start-timeout <seconds>', START_TIMEOUT_HELP)
      .action(async (options: RunOptions) => {
        const body = bodyOf(options);
        const r = await clientOf(options, startCallMs(body)).call<VmInfo>('POST', VMS_API.vms, body);
        emit(options, r, render);
      }),
  );

  vm.addCommand(
    guestOptions(clientVerb(new Command('qemu-args').description('print the QEMU command line for a guest, to launch QEMU yourself (libvirt, scripts)')))
      .option('--name <name>', 'VM name', 'guest')
      .action(async (options: RunOptions) => {
        const r = await clientOf(options).call<QemuArgsReply>('POST', VMS_API.qemuArgs, bodyOf(options));
        emit(options, r, () => shellQuote(['qemu-system-x86_64', ...r.args]));
      }),
  );

  vm.addCommand(
    clientVerb(new Command('list').description('list VMs')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<VmInfo[]>(VMS_API.vms);
      emit(options, all, (rows) =>
        rows.length === 0
          ? 'no VMs'
          : renderTable(rows, {
              id: (v) => v.id,
              name: (v) => v.name,
              state: (v) => v.state,
              pid: (v) => v.pid,
              volumes: (v) => v.volumes.map((x) => x.id).join(','),
              enis: (v) => v.enis.join(','),
            }),
      );
    }),
  );

  vm.addCommand(
    clientVerb(new Command('describe').description('show one VM').argument('<vm>', 'VM id or name')).action(async (ref: string, options: ClientOptions) => {
      emit(options, await clientOf(options).get<VmInfo>(pathTo(VMS_API.vm, { id: ref })), render);
    }),
  );

  vm.addCommand(
    clientVerb(new Command('stop').description('stop a guest: QEMU quits, volumes detach (keys destroyed), ephemeral volumes are crypto-wiped').argument('<vm>', 'VM id or name'))
      .option('--force', 'kill QEMU at once (SIGKILL)')
      .action(async (ref: string, options: ClientOptions & { force?: boolean }) => {
        const body: StopVmRequest = options.force ? { force: true } : {};
        const r = await clientOf(options).call<VmInfo>('POST', pathTo(VMS_API.stop, { id: ref }), body);
        emit(options, r, render);
      }),
  );

  vm.addCommand(
    clientVerb(new Command('start').description('start a stopped guest again with its stored spec (volumes, ENIs, memory, cpus, images, command line)').argument('<vm>', 'VM id or name'))
      .option('--force-attach', FORCE_ATTACH_HELP)
      .option('--start-timeout <seconds>', START_TIMEOUT_HELP)
      .action(async (ref: string, options: ClientOptions & { startTimeout?: string; forceAttach?: boolean }) => {
        const body: StartVmRequest = { ...startTimeoutOf(options.startTimeout), ...(options.forceAttach ? { forceAttach: true } : {}) };
        const r = await clientOf(options, startCallMs(body)).call<VmInfo>('POST', pathTo(VMS_API.start, { id: ref }), body);
        emit(options, r, render);
      }),
  );

  vm.addCommand(
    clientVerb(new Command('delete').description("remove a stopped VM's record and console log").argument('<vm>', 'VM id or name')).action(async (ref: string, options: ClientOptions) => {
      const r = await clientOf(options).call<Deleted>('DELETE', pathTo(VMS_API.vm, { id: ref }));
      emit(options, r, () => `deleted ${r.id}`);
    }),
  );

  vm.addCommand(
    clientVerb(new Command('console').description("show a guest's serial console output").argument('<vm>', 'VM id or name'))
      .option('-f, --follow', 'keep printing new output until the VM stops (Ctrl-C to quit)')
      .option('--tail <bytes>', 'start this many bytes before the end')
      .option('--previous <n>', 'show the Nth rotated console file instead (1 = newest; --vm-console-keep are kept)')
      .action(async (ref: string, options: ClientOptions & { follow?: boolean; tail?: string; previous?: string }) => {
        const client = clientOf(options);
        let offset = options.tail ? -parseSize(options.tail) : 0;
        let previous = '';
        if (options.previous !== undefined) {
          if (!/^\d+$/.test(options.previous) || Number(options.previous) < 1 || Number(options.previous) > 100) throw new UsageError(`--previous must be a whole number from 1 to 100, got '${options.previous}'`);
          if (options.follow) throw new UsageError('--previous shows a rotated file, which does not grow: drop --follow');
          previous = `&previous=${Number(options.previous)}`;
        }
        for (;;) {
          const r = await client.get<ConsoleReply>(`${pathTo(VMS_API.console, { id: ref })}?offset=${offset}${previous}`);
          process.stdout.write(r.text);
          const more = r.offset !== offset && r.text.length > 0;
          offset = r.offset;
          if (more) continue;
          if (!options.follow || r.state === 'stopped') break;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }),
  );
  return vm;
}
