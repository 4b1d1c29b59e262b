/** `nitride log-level LEVEL`: change the running daemon's log level (audited). */
import { Argument, Command } from 'commander';
import { LOG_LEVELS } from '../../log/logger.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit } from '../output.js';

export function logLevelCommand(): Command {
  return clientVerb(
    new Command('log-level')
      .description("change the running daemon's log level")
      .addArgument(new Argument('<level>', 'new level').choices(LOG_LEVELS)),
  ).action(async (level: string, options: ClientOptions) => {
    const reply = await clientOf(options).call<{ level: string; previous: string }>('PUT', '/v1/log-level', { level });
    emit(options, reply, (r) => `log level ${r.previous} -> ${r.level}`);
  });
}
