/**
 * The host-side netdevs of local ENIs: `tap` (a persistent TAP that QEMU opens by name) or
 * `veth` (a pair `<ifname>` host side + `<ifname>p` guest side, for network-namespace guests;
 * the guest side gets the ENI's MAC). The host side is brought up without addresses, IPv6
 * disabled, and a tc ingress drop keeps the host stack out of it. Its MTU is the largest any
 * VPC has (VPC_MAX_MTU): the engine's packet socket cannot send a longer frame into it, and a
 * guest's frame over its VPC's MTU reaches the engine, which drops and counts it (the guest
 * side keeps the kernel's default until the guest's DHCP client sets option 26).
 */
import { promises as fs } from 'node:fs';
import { RuntimeError, UsageError, errnoCode } from '../common/errors.js';
import { run } from '../common/run.js';
import { closeFd, tapOpen } from '../native/addon.js';
import { VPC_MAX_MTU, type EniKind } from '../api/vpc.js';

/** What the VPC does to netdevs (the runtime tests use an in-memory one). */
export interface Netdevs {
  /** Create the ENI's netdev if missing, then keep the host stack out of its host side. */
  ensure(name: string, kind: EniKind, mac: string): Promise<void>;
  /** Delete the netdev (both sides of a veth) if it exists. */
  remove(name: string): Promise<void>;
}

/** The guest side of a veth ENI whose host side is `name`. */
export const vethGuestName = (name: string): string => `${name}p`;

/** Throws unless `name` leaves room for the guest side's suffix (interface names have at most 15 characters). */
export function checkVethName(name: string): void {
  if (vethGuestName(name).length > 15) throw new UsageError(`veth interface name '${name}' is too long: at most 14 characters (the guest side adds 'p')`);
}

async function must(cmd: string, ...args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new RuntimeError(`${cmd} ${args.join(' ')} failed: ${r.out || `exit ${r.code}`}`, 'VPC_NETDEV');
}

async function exists(name: string): Promise<boolean> {
  return (await run('ip', ['link', 'show', 'dev', name])).code === 0;
}

/** The host's netdevs, through `ip`, `tc` and TUNSETIFF. */
export const hostNetdevs: Netdevs = {
  async ensure(name, kind, mac) {
    if (!(await exists(name))) {
      if (kind === 'tap') {
        const tap = tapOpen(name, { persist: true });
        closeFd(tap.fd);
      } else {
        await must('ip', 'link', 'add', 'name', name, 'type', 'veth', 'peer', 'name', vethGuestName(name));
        await must('ip', 'link', 'set', 'dev', vethGuestName(name), 'address', mac);
      }
    }
    try {
      await fs.writeFile(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, '1');
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    await must('ip', 'link', 'set', 'dev', name, 'mtu', String(VPC_MAX_MTU), 'up');
    await run('tc', ['qdisc', 'del', 'dev', name, 'clsact']);
    await must('tc', 'qdisc', 'add', 'dev', name, 'clsact');
    const matchall = await run('tc', ['filter', 'add', 'dev', name, 'ingress', 'matchall', 'action', 'drop']);
    if (matchall.code !== 0) await must('tc', 'filter', 'add', 'dev', name, 'ingress', 'bpf', 'da', 'bytecode', '1,6 0 0 2');
  },

  async remove(name) {
    if (!(await exists(name))) return;
    await must('ip', 'link', 'del', 'dev', name);
  },
};
