/** `nitride daemon`: run the host daemon in the foreground (for systemd). */
import { Command, Option } from 'commander';
import { LOG_LEVELS } from '../../api/daemon.js';
import { ENI_ALLOWANCE_QUEUE_US, VPC_POLL_US_DEFAULT, VPC_POLL_US_MAX } from '../../api/vpc.js';
import type { DaemonCliOptions } from '../lazy/daemon.js';

export function daemonCommand(): Command {
  return new Command('daemon')
    .description('run the nitride host daemon in the foreground until SIGTERM/SIGINT')
    .option('--state-dir <dir>', 'state directory (default /var/lib/nitride)')
    .option('--control-socket <path>', 'control API socket (default /run/nitride/control.sock)')
    .option('--config <file>', 'TOML config file (default /etc/nitride/nitride.toml if present)')
    .addOption(new Option('--log-level <level>', 'minimum log level').choices(LOG_LEVELS))
    .option('--kms-socket <path>', 'KMS socket for the host key, and volume data keys without --kms-endpoint (default /run/nitride-kms/kms.sock)')
    .option('--kms-endpoint <host:port>', 'network KMS for volume data keys (`nitride kms serve --listen`), reached with this host\'s key')
    .option('--kms-public-key <base64>', 'the network KMS\'s public key (`nitride kms status` there)')
    .option('--nbd-socket <path>', 'NBD Unix socket serving all volumes (default: beside the control socket)')
    .option('--nbd-listen <host:port>', 'also serve NBD on TCP (e.g. 127.0.0.1:10809)')
    .addOption(new Option('--nbd-data-plane <where>', 'serve NBD reads/writes on a native thread per connection, or on the event loop (default native)').choices(['native', 'js']))
    .option('--ephemeral-dir <dir>', 'where ephemeral volume images live (default <state-dir>/ephemeral)')
    .option('--ephemeral-handover-file', 'without systemd\'s fd store: keep running VMs\' ephemeral volumes across a restart by writing their KMS-wrapped key to metadata (off: they are wiped)')
    .option('--vpc-listen <host:port>', 'VPC underlay UDP address, numeric (default 0.0.0.0:4789)')
    .option('--vpc-dns <ip,...>', 'DNS servers that DHCP gives guests (default: none)', (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .option('--vpc-rekey-after <seconds>', 'rekey peer sessions at this age, 2-120 (default 120)', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--vpc-conntrack-max <flows>', 'flows each ENI\'s security groups track at most (default 65536)', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--vpc-allowance-queue-us <µs>', 'how long a frame over an ENI\'s allowance may wait, 0 (drop) to 1000000 (default ' + ENI_ALLOWANCE_QUEUE_US + ')', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--vpc-underlay-mtu <bytes>', 'MTU of the underlay between hosts (default 1500); local ENIs\' VPCs must fit in it with 74 bytes of encapsulation (9075 for MTU 9001)', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--vpc-poll-us <µs>', 'the VPC engine\'s longest busy-poll before it sleeps, 0 (never) to ' + VPC_POLL_US_MAX + ' (default ' + VPC_POLL_US_DEFAULT + '); above the gaps between packets it keeps a core busy, for the latency of a worker that never sleeps', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--ceph-conf <file>', 'ceph.conf of the cluster holding RBD-backed ebs volumes (absolute path)')
    .option('--ceph-pool <pool>', 'the pool of the volumes (default rbd)')
    .option('--ceph-id <name>', 'cephx client id, without "client." (default admin)')
    .option('--ceph-timeout <seconds>', 'cluster requests fail (EIO) after this long, 1-300 (default 25)', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--host-id <name>', 'this host\'s name in the locks of the rbd volumes it attaches (default: the hostname)')
    .addOption(new Option('--ebs-store <store>', 'where ebs volumes go without --store (default rbd with --ceph-conf, else local)').choices(['rbd', 'local']))
    .option('--vm-uid-range <first-last>', 'uids (and gids) for guests\' QEMUs, one per running VM, never shared (default 1879048192-1879113727)')
    .option('--vm-console-max <size>', 'cap of a guest\'s serial console log, e.g. 1M (4K-1G, default 1M); the log is rotated past it')
    .option('--vm-console-keep <n>', 'old console logs kept per guest, 0-100 (default 3)', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--fleet-endpoints <url,...>', 'fleet mode: the etcd cluster (https://HOST:PORT,...) holding host records and the VPC model', (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .option('--fleet-ca <file>', 'CA certificate of the etcd members (PEM, absolute path)')
    .option('--fleet-cert <file>', 'this host\'s etcd client certificate (PEM; its CN is the host id)')
    .option('--fleet-key <file>', 'the key of --fleet-cert (PEM)')
    .option('--metrics-listen <host:port>', 'also serve GET /metrics on this loopback TCP address (e.g. 127.0.0.1:9464)')
    .action(async (options: DaemonCliOptions) => {
      const { runDaemon } = await import('../lazy/daemon.js');
      await runDaemon(options);
    });
}
