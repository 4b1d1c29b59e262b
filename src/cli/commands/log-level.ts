/** `nitride log-level LEVEL`: change the running daemon's log level (audited). */
import { Argument, Command } from 'commander';
import { DAEMON_API, LOG_LEVELS, type LogLevel, type LogLevelChange, type SetLogLevelRequest } from '../../api/daemon.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit } from '../output.js';

export function logLevelCommand(): Command {
  return clientVerb(
    new Command('log-level')
      .description("change the running daemon's log level")
      .addArgument(new Argument('<level>', 'new level').choices(LOG_LEVELS)),
  ).action(async (level: LogLevel, options: ClientOptions) => {
    const body: SetLogLevelRequest = { level };
    const reply = await clientOf(options).call<LogLevelChange>('PUT', DAEMON_API.logLevel, body);
    emit(options, reply, (r) => `log level ${r.previous} -> ${r.level}`);
  });
}
