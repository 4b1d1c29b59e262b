/**
 * Underlay tools for the VPC tests: packet captures with tcpdump inside a network namespace,
 * and a raw-frame injector (Python, AF_PACKET) that replays, tampers with or forges datagrams
 * at a real daemon's underlay socket.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { runOk } from './run.js';

export interface Capture {
  /** Stop tcpdump (SIGINT, so it flushes) and return the captured frames. */
  stop(): Promise<Buffer[]>;
}

/** Start `tcpdump -i IFNAME -w FILE FILTER…` in namespace `ns`; resolves once it listens. */
export async function startCapture(ns: string, ifname: string, file: string, filter: string[], options: { count?: number } = {}): Promise<Capture> {
  // --immediate-mode: without it, packets wait in the capture ring until a block fills or times
  // out (1 s), and a capture stopped sooner loses them.
  const args = ['netns', 'exec', ns, 'tcpdump', '-n', '--immediate-mode', '-i', ifname, '-s', '0', '-U', '-w', file, ...(options.count ? ['-c', String(options.count)] : []), ...filter];
  const child = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/listening on/.test(err)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`tcpdump exited with ${code}: ${err.trim()}`)));
  });
  return {
    async stop() {
      await new Promise((r) => setTimeout(r, 100)); // the last packets' way through the stack
      if (child.exitCode === null) child.kill('SIGINT');
      await exited;
      return readPcap(readFileSync(file));
    },
  };
}

/** The frames of a classic pcap file (either byte order). */
export function readPcap(data: Buffer): Buffer[] {
  if (data.length < 24) return [];
  const le = data.readUInt32LE(0) === 0xa1b2c3d4 || data.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (off: number) => (le ? data.readUInt32LE(off) : data.readUInt32BE(off));
  const frames: Buffer[] = [];
  for (let off = 24; off + 16 <= data.length; ) {
    const incl = u32(off + 8);
    off += 16;
    frames.push(data.subarray(off, off + incl));
    off += incl;
  }
  return frames;
}

/** Offset of the UDP payload in an Ethernet + IPv4 + UDP frame, or -1. */
export function udpPayloadOffset(frame: Buffer): number {
  if (frame.length < 42 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 17) return -1;
  return 14 + (frame[14]! & 0x0f) * 4 + 8;
}

/**
 * Send whole Ethernet frames out of `ifname` in namespace `ns` (AF_PACKET, Debian's python3):
 * the kernel on the other end of the link receives them as if the peer had sent them.
 */
export async function injectFrames(ns: string, ifname: string, frames: Buffer[]): Promise<void> {
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)',
    's.bind((sys.argv[1], 0))',
    'for h in sys.argv[2:]: s.send(bytes.fromhex(h))',
  ].join('\n');
  await runOk('ip', ['netns', 'exec', ns, '/usr/bin/python3', '-c', script, ifname, ...frames.map((f) => f.toString('hex'))]);
}

/** Send UDP datagrams from `from` (HOST:PORT, bound in namespace `ns`) to `to` (HOST:PORT). */
export async function sendDatagrams(ns: string, from: string, to: string, payloads: Buffer[]): Promise<void> {
  const script = [
    'import socket, sys',
    'fh, fp = sys.argv[1].rsplit(":", 1); th, tp = sys.argv[2].rsplit(":", 1)',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    's.bind((fh, int(fp)))',
    'for h in sys.argv[3:]: s.sendto(bytes.fromhex(h), (th, int(tp)))',
  ].join('\n');
  await runOk('ip', ['netns', 'exec', ns, '/usr/bin/python3', '-c', script, from, to, ...payloads.map((p) => p.toString('hex'))]);
}
