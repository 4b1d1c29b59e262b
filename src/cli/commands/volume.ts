/** `nitride volume …`: EBS-like and ephemeral encrypted volumes served over NBD. */
import path from 'node:path';
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { parseCount, parseMiBps, parseSize } from '../../common/units.js';
import { pathTo, type Deleted } from '../../api/control.js';
import {
  VOLUMES_API,
  type CopyProgress,
  type CreateVolumeRequest,
  type DetachVolumeRequest,
  type DetachVolumeResult,
  type ModifyVolumeRequest,
  type PerformanceRequest,
  type ResizeVolumeRequest, type RewrapVolumeRequest, type VolumeCopyRequest, type VolumeInfo, type VolumePerformance } from '../../api/volumes.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, formatBytes, renderFields, renderTable } from '../output.js';
import { progressBar } from '../progress.js';

/** The performance flags, as typed. */
interface PerformanceOptions {
  iops?: string;
  throughput?: string;
  burstIops?: string;
  burstIoCredits?: string;
  burstThroughput?: string;
  burstMib?: string;
}

/** Adds the performance flags; `removable`: 'unlimited' removes a limit (modify). */
function performanceFlags(cmd: Command, removable: boolean): Command {
  const or = removable ? ", or 'unlimited'" : '';
  return cmd
    .option('--iops <n>', `provisioned IOPS (an I/O up to 256 KiB counts as one, larger ones as ceil(size / 256 KiB))${or}`)
    .option('--throughput <MiB/s>', `provisioned throughput in MiB/s, e.g. 125 or 1GiB/s${or}`)
    .option('--burst-iops <n>', `gp2-style burst: IOPS while credits last (with --burst-io-credits)${or}`)
    .option('--burst-io-credits <n>', `ceiling of the IOPS burst credits, in I/Os (refilled at --iops)${or}`)
    .option('--burst-throughput <MiB/s>', `burst throughput while credits last (with --burst-mib)${or}`)
    .option('--burst-mib <n>', `ceiling of the throughput burst credits, in MiB (refilled at --throughput)${or}`);
}

/** The request's performance fields from the flags given (absent flags: absent fields). */
function performanceOf(o: PerformanceOptions, removable: boolean): PerformanceRequest {
  const out: PerformanceRequest = {};
  const set = (key: keyof VolumePerformance, text: string | undefined, flag: string, parse: (t: string, what: string) => number) => {
    if (text === undefined) return;
    if (removable && text.trim().toLowerCase() === 'unlimited') out[key] = null;
    else out[key] = parse(text, flag);
  };
  set('iops', o.iops, '--iops', parseCount);
  set('throughputMiBps', o.throughput, '--throughput', parseMiBps);
  set('burstIops', o.burstIops, '--burst-iops', parseCount);
  set('burstIoCredits', o.burstIoCredits, '--burst-io-credits', parseCount);
  set('burstThroughputMiBps', o.burstThroughput, '--burst-throughput', parseMiBps);
  set('burstMiB', o.burstMib, '--burst-mib', parseCount);
  return out;
}

interface CreateOptions extends ClientOptions, PerformanceOptions {
  type: 'ebs' | 'ephemeral';
  size?: string;
  fromSnapshot?: string;
  kmsKey?: string;
  name?: string;
  multiAttach?: boolean;
  store?: 'rbd' | 'local';
}

export function volumeCommand(): Command {
  const volume = new Command('volume').description('encrypted volumes (EBS-like and ephemeral), served over NBD');

  volume.addCommand(
    performanceFlags(clientVerb(new Command('create').description('create a volume; prints its id and NBD URI')), false)
      .addOption(new Option('--type <type>', 'ebs (persistent, KMS-wrapped key) or ephemeral (key in memory only)').choices(['ebs', 'ephemeral']).default('ebs'))
      .option('--size <size>', 'size, e.g. 10G, 512M (binary units); from a snapshot: at least its size (the default)')
      .option('--from-snapshot <snap>', "an rbd copy-on-write clone of this snapshot (its data key wrapped anew for the new volume)")
      .option('--kms-key <id>', 'KMS key id or alias for ebs (default: the KMS default key)')
      .option('--name <name>', 'a unique name')
      .option('--multi-attach', 'allow several consumers at once')
      .addOption(new Option('--store <store>', "ebs: a Ceph RBD image or a local file (default: the daemon's ebs_store)").choices(['rbd', 'local']))
      .action(async (options: CreateOptions) => {
        const performance = performanceOf(options, false);
        const body: CreateVolumeRequest = {
          type: options.type,
          ...(options.size !== undefined ? { size: parseSize(options.size) } : {}),
          ...(options.fromSnapshot ? { fromSnapshot: options.fromSnapshot } : {}),
          ...(options.kmsKey ? { kmsKeyId: options.kmsKey } : {}),
          ...(options.name ? { name: options.name } : {}),
          ...(options.multiAttach ? { multiAttach: true } : {}),
          ...(options.store ? { store: options.store } : {}),
          ...(Object.keys(performance).length > 0 ? { performance } : {}),
        };
        const info = await clientOf(options).call<VolumeInfo>('POST', VOLUMES_API.volumes, body);
        emit(options, info, renderVolume);
      }),
  );

  volume.addCommand(
    clientVerb(new Command('list').description('list volumes')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<VolumeInfo[]>(VOLUMES_API.volumes);
      emit(options, all, (rows) =>
        rows.length === 0
          ? 'no volumes'
          : renderTable(rows, {
              id: (v) => v.id,
              name: (v) => v.name,
              type: (v) => v.type,
              store: (v) => v.store,
              size: (v) => formatBytes(v.size),
              state: (v) => v.state,
              'kms key': (v) => v.encryption.kmsKeyId,
            }),
      );
    }),
  );

  volume.addCommand(
    clientVerb(new Command('describe').description('show one volume').argument('<id>', 'volume id')).action(async (id: string, options: ClientOptions) => {
      emit(options, await clientOf(options).get<VolumeInfo>(pathTo(VOLUMES_API.volume, { id })), renderVolume);
    }),
  );

  volume.addCommand(
    clientVerb(new Command('delete').description('delete a volume (its key and data are destroyed)').argument('<id>', 'volume id')).action(
      async (id: string, options: ClientOptions) => {
        const r = await clientOf(options).call<Deleted>('DELETE', pathTo(VOLUMES_API.volume, { id }));
        emit(options, r, () => `deleted ${r.id}`);
      },
    ),
  );

  volume.addCommand(
    clientVerb(
      new Command('detach')
        .description('free an rbd volume held by another host: --force fences that host (Ceph blocklist) and breaks its lock')
        .argument('<id>', 'volume id')
        .option('--force', 'fence the holder: it can never write to the cluster again'),
    ).action(async (id: string, options: ClientOptions & { force?: boolean }) => {
      const body: DetachVolumeRequest = options.force ? { force: true } : {};
      const r = await clientOf(options).call<DetachVolumeResult>('POST', pathTo(VOLUMES_API.detach, { id }), body);
      emit(options, r, () =>
        r.fenced.length ? r.fenced.map((h) => `fenced host ${h.host} (${h.client} at ${h.address}); ${id} is free`).join('\n') : `${id} is not held by any host`,
      );
    }),
  );

  volume.addCommand(
    clientVerb(new Command('resize').description('grow a volume').argument('<id>', 'volume id').requiredOption('--size <size>', 'new size, e.g. 20G')).action(
      async (id: string, options: ClientOptions & { size: string }) => {
        const body: ResizeVolumeRequest = { size: parseSize(options.size) };
        const info = await clientOf(options).call<VolumeInfo>('POST', pathTo(VOLUMES_API.resize, { id }), body);
        emit(options, info, renderVolume);
      },
    ),
  );

  volume.addCommand(
    performanceFlags(
      clientVerb(new Command('modify').description('change the provisioned IOPS/throughput, live (attached connections follow within a second)').argument('<id>', 'volume id')),
      true,
    ).action(async (id: string, options: ClientOptions & PerformanceOptions) => {
      const body: ModifyVolumeRequest = { performance: performanceOf(options, true) };
      if (Object.keys(body.performance).length === 0) throw new UsageError('nothing to modify: give --iops, --throughput or a --burst-… flag');
      const info = await clientOf(options).call<VolumeInfo>('POST', pathTo(VOLUMES_API.modify, { id }), body);
      emit(options, info, renderVolume);
    }),
  );

  volume.addCommand(
    clientVerb(
      new Command('rewrap')
        .description("re-wrap the volume's data key under the KMS key's newest version (after rotation) or another key; the data is untouched")
        .argument('<id>', 'volume id')
        .option('--kms-key <id>', 'move to this KMS key'),
    ).action(async (id: string, options: ClientOptions & { kmsKey?: string }) => {
      const body: RewrapVolumeRequest = options.kmsKey ? { kmsKeyId: options.kmsKey } : {};
      const info = await clientOf(options).call<VolumeInfo>('POST', pathTo(VOLUMES_API.rewrap, { id }), body);
      emit(options, info, renderVolume);
    }),
  );

  for (const direction of ['export', 'import'] as const) {
    const description = direction === 'export' ? 'copy the volume out to a raw image file (decrypted, sparse)' : 'copy a raw image file into the volume (encrypted)';
    volume.addCommand(
      clientVerb(new Command(direction).description(description).argument('<id>', 'volume id').argument('<file>', 'raw image file')).action(
        async (id: string, file: string, options: ClientOptions) => {
          const bar = progressBar(`${direction} ${id}`, !options.json && process.stderr.isTTY === true);
          const abort = new AbortController();
          const onSigint = () => abort.abort();
          process.once('SIGINT', onSigint);
          try {
            const body: VolumeCopyRequest = { path: path.resolve(file) };
            const result = await clientOf(options).stream<CopyProgress>(
              'POST',
              pathTo(VOLUMES_API[direction], { id }),
              body,
              (p) => {
                const { done, total } = p as CopyProgress;
                bar.update(done, total);
              },
              abort.signal,
            );
            bar.finish();
            emit(options, { id, file: path.resolve(file), bytes: result.total }, (r) => `${direction}ed ${formatBytes(r.bytes)} ${direction === 'export' ? 'from' : 'into'} ${id}`);
          } finally {
            process.off('SIGINT', onSigint);
          }
        },
      ),
    );
  }
  return volume;
}

function renderVolume(v: VolumeInfo): string {
  return renderFields({
    id: v.id,
    name: v.name,
    type: v.type,
    store: v.store,
    size: `${formatBytes(v.size)} (${v.size} bytes)`,
    state: v.state,
    attachments: v.attachments.length ? v.attachments.map((a) => `${a.consumer} (${a.connections})`).join(', ') : '-',
    ...(v.holder !== undefined ? { holder: v.holder ? `host ${v.holder.host} (${v.holder.client} at ${v.holder.address})` : '-' } : {}),
    encryption: `${v.encryption.cipher}, ${v.encryption.dataUnitSize}-byte units${v.encryption.kmsKeyId ? `, key ${v.encryption.kmsKeyId} v${v.encryption.keyVersion}` : ', key in memory only'}`,
    'multi-attach': v.multiAttach,
    performance: renderPerformance(v.performance),
    throttled: `${v.throttled.iopsSeconds.toFixed(3)} s by IOPS, ${v.throttled.throughputSeconds.toFixed(3)} s by throughput`,
    created: v.createdAt,
    uri: v.uri,
    'tcp uri': v.tcpUri,
  });
}

function renderPerformance(p: VolumePerformance): string {
  const iops = p.iops === null ? 'unlimited IOPS' : `${p.iops} IOPS${p.burstIops !== null ? ` (burst ${p.burstIops}, ${p.burstIoCredits} credits)` : ''}`;
  const tp = p.throughputMiBps === null ? 'unlimited MiB/s' : `${p.throughputMiBps} MiB/s${p.burstThroughputMiBps !== null ? ` (burst ${p.burstThroughputMiBps} MiB/s, ${p.burstMiB} MiB credits)` : ''}`;
  return `${iops}, ${tp}`;
}
