/** Control API routes of fleet mode (contract: src/api/fleet.ts). */
import { ConflictError } from '../../common/errors.js';
import { FLEET_API } from '../../api/fleet.js';
import type { ControlServer } from '../../control/server.js';
import type { Fleet } from '../../fleet/fleet.js';

export function registerFleetRoutes(control: ControlServer, fleet: Fleet | undefined): void {
  const need = (): Fleet => {
    if (!fleet) throw new ConflictError('this daemon is standalone (no --fleet-endpoints)', 'FLEET_OFF');
    return fleet;
  };
  control.register({ method: 'GET', path: FLEET_API.status, handle: () => need().status() });
  control.register({ method: 'GET', path: FLEET_API.hosts, handle: () => need().hosts() });
}
