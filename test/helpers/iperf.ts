/** iperf3 between two guest namespaces: a one-off server in one, the client in the other. */
import { spawn, type ChildProcess } from 'node:child_process';
import { must, waitFor } from './netns.js';
import { run } from './run.js';

export interface IperfResult {
  code: number | null;
  error?: string;
  /** Received (TCP) bytes and bits per second; the sender's retransmits. */
  bytes: number;
  bps: number;
  retransmits: number;
  /** Bytes of each reporting interval (`-i`, 1 s by default), in order. */
  intervals: number[];
  /** UDP (`-u`): datagrams sent and lost. */
  udp?: { packets: number; lost_packets: number };
}

/**
 * iperf3 for `seconds` from namespace `from` to `to` (port 5201), with client flags `extra`;
 * the client's JSON figures. The server goes into `servers` (for an afterAll to kill) and is
 * killed and reaped before this returns.
 */
export async function iperf(servers: ChildProcess[], from: string, to: { ns: string; ip: string }, seconds: number, extra: string[] = []): Promise<IperfResult> {
  const server = spawn('ip', ['netns', 'exec', to.ns, 'iperf3', '-s', '-1', '-B', to.ip, '-p', '5201'], { stdio: 'ignore' });
  servers.push(server);
  const serverExit = new Promise((r) => server.once('exit', r));
  try {
    await waitFor('the iperf3 server', async () => {
      if (server.exitCode !== null) throw Object.assign(new Error(`iperf3 server exited with ${server.exitCode}`), { fatal: true });
      return (await must('ip', 'netns', 'exec', to.ns, 'ss', '-Hltn', 'sport', '=', ':5201')).includes('5201');
    }, 15_000);
    const r = await run('ip', ['netns', 'exec', from, 'iperf3', '-c', to.ip, '-p', '5201', '-t', String(seconds), '-J', '--connect-timeout', '3000', ...extra], { timeoutMs: (seconds + 30) * 1000 });
    const j = JSON.parse(r.stdout || '{}') as {
      error?: string;
      intervals?: Array<{ sum: { bytes: number } }>;
      end?: { sum_received?: { bytes: number; bits_per_second: number }; sum_sent?: { retransmits?: number }; sum?: { packets: number; lost_packets: number } };
    };
    return {
      code: r.code,
      ...(j.error ? { error: j.error } : {}),
      bytes: j.end?.sum_received?.bytes ?? 0,
      bps: j.end?.sum_received?.bits_per_second ?? 0,
      retransmits: j.end?.sum_sent?.retransmits ?? 0,
      intervals: (j.intervals ?? []).map((i) => i.sum.bytes),
      ...(j.end?.sum ? { udp: j.end.sum } : {}),
    };
  } finally {
    if (server.exitCode === null) server.kill('SIGKILL');
    await serverExit;
  }
}
