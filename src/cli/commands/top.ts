/**
 * `nitride top`: the daemon's activity, refreshed: per volume the request and byte rates and
 * errors, per local NIC the frame rates and drops, per peer the packet rates — rates between
 * two scrapes of GET /metrics. `--count N` stops after N refreshes; `--json` prints one JSON
 * object per refresh.
 */
import { Command, InvalidArgumentError } from 'commander';
import { DAEMON_API } from '../../api/daemon.js';
import { parseExposition, sumBy, type Series } from '../../api/exposition.js';
import { ControlClient, apiErrorOf } from '../../control/client.js';
import { controlSocketOption } from '../client-options.js';
import { renderTable } from '../output.js';

interface TopOptions {
  controlSocket: string;
  interval: number;
  count?: number;
  json?: boolean;
}

export interface TopFrame {
  intervalSeconds: number;
  volumes: Array<{ volume: string; readsPerSecond: number; writesPerSecond: number; readBytesPerSecond: number; writeBytesPerSecond: number; errorsPerSecond: number; consumers: number; iopsThrottledFraction: number; throughputThrottledFraction: number }>;
  nics: Array<{ eni: string; fromGuestFramesPerSecond: number; toGuestFramesPerSecond: number; dropsPerSecond: number }>;
  peers: Array<{ peer: string; rxPacketsPerSecond: number; txPacketsPerSecond: number; established: boolean }>;
}

async function scrape(client: ControlClient): Promise<{ at: number; series: Series[] }> {
  const reply = await client.request('GET', DAEMON_API.metrics);
  if (reply.status >= 400) throw apiErrorOf(reply.status, client.json(reply));
  return { at: performance.now(), series: parseExposition(reply.body.toString('utf8')) };
}

/** Rates between two scrapes. */
export function topFrame(before: Series[], after: Series[], seconds: number): TopFrame {
  const rate = (name: string, by: string, match: Record<string, string> = {}) => {
    const a = sumBy(after, name, by, match);
    const b = sumBy(before, name, by, match);
    return (key: string) => Math.max(0, ((a.get(key) ?? 0) - (b.get(key) ?? 0)) / seconds);
  };
  const volumes = [...sumBy(after, 'nitride_volume_info', 'volume').keys()];
  const reads = rate('nitride_volume_requests_total', 'volume', { op: 'read' });
  const writes = rate('nitride_volume_requests_total', 'volume', { op: 'write' });
  const readBytes = rate('nitride_volume_bytes_total', 'volume', { op: 'read' });
  const writeBytes = rate('nitride_volume_bytes_total', 'volume', { op: 'write' });
  const errors = rate('nitride_volume_errors_total', 'volume');
  const consumers = sumBy(after, 'nitride_volume_attached_consumers', 'volume');
  // Seconds throttled per second: the share of the interval the volume sat at its limit.
  const iopsThrottled = rate('nitride_volume_performance_exceeded_iops_seconds_total', 'volume');
  const tpThrottled = rate('nitride_volume_performance_exceeded_tp_seconds_total', 'volume');
  const nics = [...sumBy(after, 'nitride_nic_frames_total', 'eni').keys()];
  const fromGuest = rate('nitride_nic_frames_total', 'eni', { direction: 'from_guest' });
  const toGuest = rate('nitride_nic_frames_total', 'eni', { direction: 'to_guest' });
  const drops = rate('nitride_nic_drops_total', 'eni');
  const peers = [...sumBy(after, 'nitride_peer_session_established', 'peer').keys()];
  const rx = rate('nitride_peer_packets_total', 'peer', { direction: 'rx' });
  const tx = rate('nitride_peer_packets_total', 'peer', { direction: 'tx' });
  const established = sumBy(after, 'nitride_peer_session_established', 'peer');
  return {
    intervalSeconds: seconds,
    volumes: volumes.map((v) => ({
      volume: v,
      readsPerSecond: reads(v),
      writesPerSecond: writes(v),
      readBytesPerSecond: readBytes(v),
      writeBytesPerSecond: writeBytes(v),
      errorsPerSecond: errors(v),
      consumers: consumers.get(v) ?? 0,
      iopsThrottledFraction: Math.min(1, iopsThrottled(v)),
      throughputThrottledFraction: Math.min(1, tpThrottled(v)),
    })),
    nics: nics.map((e) => ({ eni: e, fromGuestFramesPerSecond: fromGuest(e), toGuestFramesPerSecond: toGuest(e), dropsPerSecond: drops(e) })),
    peers: peers.map((p) => ({ peer: p, rxPacketsPerSecond: rx(p), txPacketsPerSecond: tx(p), established: established.get(p) === 1 })),
  };
}

const fixed = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
const mbps = (bytes: number) => (bytes / 1e6).toFixed(1);

export function renderTopFrame(f: TopFrame): string {
  const sections = [`every ${f.intervalSeconds.toFixed(1)} s`];
  sections.push(
    f.volumes.length
      ? renderTable(f.volumes, {
          volume: (v) => v.volume,
          attached: (v) => v.consumers,
          'read/s': (v) => fixed(v.readsPerSecond),
          'write/s': (v) => fixed(v.writesPerSecond),
          'read MB/s': (v) => mbps(v.readBytesPerSecond),
          'write MB/s': (v) => mbps(v.writeBytesPerSecond),
          'errors/s': (v) => fixed(v.errorsPerSecond),
          'at iops limit': (v) => `${(v.iopsThrottledFraction * 100).toFixed(0)}%`,
          'at tp limit': (v) => `${(v.throughputThrottledFraction * 100).toFixed(0)}%`,
        })
      : 'no volumes',
  );
  if (f.nics.length) {
    sections.push(
      renderTable(f.nics, {
        nic: (n) => n.eni,
        'from guest/s': (n) => fixed(n.fromGuestFramesPerSecond),
        'to guest/s': (n) => fixed(n.toGuestFramesPerSecond),
        'drops/s': (n) => fixed(n.dropsPerSecond),
      }),
    );
  }
  if (f.peers.length) {
    sections.push(
      renderTable(f.peers, {
        peer: (p) => p.peer,
        session: (p) => (p.established ? 'established' : 'none'),
        'rx pkt/s': (p) => fixed(p.rxPacketsPerSecond),
        'tx pkt/s': (p) => fixed(p.txPacketsPerSecond),
      }),
    );
  }
  return sections.join('\n\n');
}

function positive(what: string, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new InvalidArgumentError(`${what} must be a positive ${integer ? 'integer' : 'number'}`);
    return n;
  };
}

export function topCommand(): Command {
  return new Command('top')
    .description('show volume, NIC and peer activity, refreshed (rates from GET /metrics)')
    .addOption(controlSocketOption())
    .option('--interval <seconds>', 'seconds between refreshes', positive('--interval', false), 2)
    .option('--count <n>', 'stop after N refreshes', positive('--count', true))
    .option('--json', 'print one JSON object per refresh')
    .action(async (options: TopOptions) => {
      const client = new ControlClient({ socketPath: options.controlSocket });
      const live = process.stdout.isTTY === true && !options.json;
      let previous = await scrape(client);
      for (let n = 0; options.count === undefined || n < options.count; n++) {
        await new Promise((r) => setTimeout(r, options.interval * 1000));
        const current = await scrape(client);
        const frame = topFrame(previous.series, current.series, (current.at - previous.at) / 1000);
        previous = current;
        if (options.json) process.stdout.write(JSON.stringify(frame) + '\n');
        else process.stdout.write((live ? '\x1b[H\x1b[2J' : n > 0 ? '\n' : '') + renderTopFrame(frame) + '\n');
      }
    });
}
