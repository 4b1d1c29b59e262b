/** One nitride host (a namespace, its KMS and daemon) ready to run the test guest of scripts/build-guest.sh. */
import path from 'node:path';
import { ROOT } from './nitride.js';
import { NsLab, type NsHost } from './netns.js';
import { runOk } from './run.js';

export interface GuestHost {
  host: NsHost;
  /** Holds vmlinuz and initrd.img (both on the host's allowlist). */
  guestDir: string;
}

/** Build (or reuse) the guest, start host 'h' in LAB with DAEMONARGS, create the VPC and subnet, allow the guest's images. */
export async function startGuestHost(lab: NsLab, daemonArgs: string[], net: { vpcId: string; subnetId: string; subnetCidr: string }): Promise<GuestHost> {
  const guestDir = (await runOk(path.join(ROOT, 'scripts/build-guest.sh'), ['--quiet'], { timeoutMs: 600_000 })).trim();
  const ns = await lab.addNamespace('h');
  const host = await lab.startHost('h', ns, '127.0.0.1', daemonArgs);
  await host.json(['vpc', 'create', '--cidr', '172.31.0.0/16', '--id', net.vpcId]);
  await host.json(['subnet', 'create', '--vpc', net.vpcId, '--cidr', net.subnetCidr, '--id', net.subnetId]);
  for (const f of ['vmlinuz', 'initrd.img']) await host.json(['image', 'allow', path.join(guestDir, f)]);
  return { host, guestDir };
}

/** Teardown: SIGKILL the host's running guests, the lab's namespaces, the scratch directory. */
export async function stopGuestHost(host: NsHost | undefined, lab: NsLab, scratch: { cleanup(): void }): Promise<void> {
  const list = await host?.json<Array<{ state: string; pid: number | null }>>(['vm', 'list']).catch(() => []);
  for (const vm of list ?? []) if (vm.state === 'running' && vm.pid) process.kill(vm.pid, 'SIGKILL');
  await lab.teardown();
  scratch.cleanup();
}
