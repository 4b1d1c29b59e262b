/** `nitride status`: what the daemon is running and how it is. */
import { Command } from 'commander';
import type { DaemonStatus } from '../../daemon/daemon.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, formatDuration, renderFields } from '../output.js';

export function statusCommand(): Command {
  return clientVerb(new Command('status').description('show the daemon status')).action(async (options: ClientOptions) => {
    const status = await clientOf(options).get<DaemonStatus>('/v1/status');
    emit(options, status, (s) =>
      renderFields({
        health: s.health,
        version: s.version,
        pid: s.pid,
        uptime: formatDuration(s.uptimeSeconds),
        'state dir': s.stateDir,
        'control socket': s.controlSocket,
        config: s.configFile,
        'log level': s.logLevel,
        'nbd socket': s.nbd.socket,
        'nbd tcp': s.nbd.tcp,
        'nbd connections': s.nbd.connections,
        'kms socket': s.kmsSocket,
        volumes: `${s.volumes.total} (${s.volumes.ebs} ebs, ${s.volumes.ephemeral} ephemeral; ${s.volumes.inUse} in use)`,
        vpc: s.vpc.state === 'up' ? `up, underlay ${s.vpc.listen}` : `down: ${s.vpc.message}`,
        'vpc public key': s.vpc.publicKey,
        'vpc model': `${s.vpc.vpcs} VPCs, ${s.vpc.subnets} subnets, ${s.vpc.enis.total} ENIs (${s.vpc.enis.local} local)`,
        peers: s.vpc.peers.length ? s.vpc.peers.map((p) => `${p.name} (${p.session})`).join(', ') : '-',
      }),
    );
  });
}
