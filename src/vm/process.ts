/**
 * The QEMU processes of VMs, seen through /proc: a VM's process is identified by its pid and
 * its start time (so a recycled pid is never mistaken for the VM), and a zombie counts as gone
 * (a re-adopted QEMU's parent may be an init that does not reap).
 */
import { readFileSync } from 'node:fs';

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or undefined. */
export function processStartTime(pid: number): string | undefined {
  const stat = procStat(pid);
  return stat?.fields[19];
}

/** Whether `pid` is a live (not zombie) process started at `startTime`. */
export function processIsRunning(pid: number, startTime: string): boolean {
  const stat = procStat(pid);
  if (!stat) return false;
  return stat.state !== 'Z' && stat.state !== 'X' && stat.fields[19] === startTime;
}

/** The first child of `pid` (/proc/PID/task/PID/children), if it has forked one. */
export function firstChild(pid: number): number | undefined {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

function procStat(pid: number): { state: string; fields: string[] } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
  return { state: rest[0]!, fields: rest };
}
