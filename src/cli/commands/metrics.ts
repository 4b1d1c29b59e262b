/** `nitride metrics`: the daemon's Prometheus text, as a scraper sees it (GET /metrics). */
import { Command } from 'commander';
import { DAEMON_API } from '../../api/daemon.js';
import { ControlClient, apiErrorOf } from '../../control/client.js';
import { controlSocketOption, type ClientOptions } from '../client-options.js';

export function metricsCommand(): Command {
  return new Command('metrics')
    .description('print the daemon metrics (Prometheus text format, as GET /metrics serves them)')
    .addOption(controlSocketOption())
    .action(async (options: ClientOptions) => {
    const client = new ControlClient({ socketPath: options.controlSocket });
    const reply = await client.request('GET', DAEMON_API.metrics);
    if (reply.status >= 400) throw apiErrorOf(reply.status, client.json(reply));
    process.stdout.write(reply.body);
  });
}
