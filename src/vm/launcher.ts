/**
 * The first process of a guest's systemd unit (unit.ts), run as root by PID 1: opens the
 * guest's TAPs by name and execs the jail (jail.ts) with them as fd 3, 4, … . Usage:
 * `node launcher.js LAUNCH_JSON`. A failure is one line on stderr (the VM's qemu.log) and exit 1.
 */
import { readFileSync } from 'node:fs';
import { closeFd, execWithFds, tapOpen } from '../native/addon.js';
import { oneLine } from '../common/errors.js';
import type { LaunchFile } from './unit.js';

function main(file: string | undefined): void {
  if (!file) throw new Error('usage: launcher.js LAUNCH_JSON');
  const launch = JSON.parse(readFileSync(file, 'utf8')) as LaunchFile;
  const fds: number[] = [];
  try {
    for (const name of launch.taps) fds.push(tapOpen(name, { vnetHdr: true }).fd);
    execWithFds(launch.command, fds);
  } finally {
    for (const fd of fds) closeFd(fd);
  }
}

try {
  main(process.argv[2]);
} catch (err) {
  process.stderr.write(`nitride vm launcher: ${oneLine(err)}\n`);
  process.exit(1);
}
