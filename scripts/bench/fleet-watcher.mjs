#!/usr/bin/env node
// A light fleet host for scripts/bench/fleet.mjs: the daemon's own fleet code (dist/fleet: the
// store, the mirror's list/watch and view rebuild, the host registration under a lease) on a
// VPC without a data plane. Its host record carries a random public key and an endpoint nothing
// answers on (the real daemons see it as a peer that never completes a handshake).
// Prints `applied REVISION EPOCH_MS` each time a view is handed to the (absent) engine.
//   node scripts/bench/fleet-watcher.mjs --endpoints URL,URL --ca F --cert F --key F --endpoint HOST:PORT --snapshot F
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, benchOptions } from '../lib/bench-common.mjs';

const opt = benchOptions('fleet-watcher', 'usage: fleet-watcher --endpoints URL,URL --ca F --cert F --key F --endpoint HOST:PORT --snapshot F', {
  endpoints: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  endpoint: { type: 'string' },
  snapshot: { type: 'string' },
});
const dist = (f) => import(pathToFileURL(path.join(ROOT, 'dist', f)).href);
const { FleetStore } = await dist('fleet/store.js');
const { FleetMirror } = await dist('fleet/mirror.js');
const { HostRegistration } = await dist('fleet/registration.js');
const { createLogger } = await dist('log/logger.js');

const logger = createLogger({ level: 'warn', destination: { write: (s) => process.stderr.write(s) } });
const [host, port] = [opt.endpoint.slice(0, opt.endpoint.lastIndexOf(':')), Number(opt.endpoint.slice(opt.endpoint.lastIndexOf(':') + 1))];
const publicKey = randomBytes(32).toString('base64');
let mirror;
// What FleetMirror and HostRegistration call on a daemon's VpcManager, with no engine behind it.
const applied = () => process.stdout.write(`applied ${mirror.state().revision} ${Date.now()}\n`);
const vpc = {
  status: () => ({ publicKey, port }),
  hostPublicKey: () => publicKey,
  async applyFleetModel() {
    // The mirror reads its revision and builds the view in the same tick as this call.
    applied();
  },
  async applyFleetDelta(delta) {
    // A daemon's in-place path: the view changes by the watch batch's keys.
    delta.apply();
    applied();
    return true;
  },
};
const store = await FleetStore.open({ endpoints: opt.endpoints.split(','), ca: opt.ca, cert: opt.cert, key: opt.key });
mirror = new FleetMirror(store, vpc, opt.snapshot, logger);
await mirror.start();
const registration = new HostRegistration(store, vpc, host, logger, () => mirror.refresh());
registration.start();

const stop = async () => {
  await registration.close();
  await mirror.close();
  store.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
