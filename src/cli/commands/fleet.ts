/** `nitride fleet status|hosts`: this daemon's view of the fleet (fleet mode only). */
import { Command } from 'commander';
import { FLEET_API, type FleetHostInfo, type FleetStatus } from '../../api/fleet.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable } from '../output.js';

/** The `fleet:` line of `nitride status` and `fleet status`. */
export function fleetLine(s: FleetStatus): string {
  return s.state === 'ok' ? `ok, host ${s.hostId}, ${s.hosts} hosts, revision ${s.appliedRevision}` : `degraded (etcd unreachable since ${s.degradedSince})`;
}

export function fleetCommand(): Command {
  const fleet = new Command('fleet').description('the fleet this daemon belongs to (daemon --fleet-endpoints)');

  fleet.addCommand(
    clientVerb(new Command('status').description('etcd health, this host\'s registration, the watch revision and its lag')).action(async (options: ClientOptions) => {
      const s = await clientOf(options).get<FleetStatus>(FLEET_API.status);
      emit(options, s, () =>
        renderFields({
          fleet: fleetLine(s),
          host: s.hostId,
          etcd: s.endpoints.join(', '),
          'last error': s.message ?? undefined,
          registered: s.registeredAt ? `${s.registeredAt} (lease ${s.leaseTtlSeconds} s)` : 'no',
          revision: `${s.revision} seen, ${s.appliedRevision} applied (lag ${s.revision - s.appliedRevision})`,
          hosts: s.hosts,
          'ignored records': s.counters.badRecords,
          'host key changes': s.counters.hostKeyChanges,
          relists: s.counters.relists,
        }),
      );
    }),
  );

  fleet.addCommand(
    clientVerb(new Command('hosts').description('the hosts registered in etcd and the VPC session with each')).action(async (options: ClientOptions) => {
      const hosts = await clientOf(options).get<FleetHostInfo[]>(FLEET_API.hosts);
      emit(options, hosts, (rows) =>
        rows.length === 0
          ? 'no hosts'
          : renderTable(rows, {
              host: (h) => (h.self ? `${h.hostId} (this host)` : h.hostId),
              endpoint: (h) => h.endpoint,
              session: (h) => h.session,
              version: (h) => h.version,
              'public key': (h) => h.publicKey,
            }),
      );
    }),
  );
  return fleet;
}
