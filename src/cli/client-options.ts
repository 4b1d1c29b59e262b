/** The options every client verb takes, and the client they build. */
import { Command, Option } from 'commander';
import { ControlClient } from '../control/client.js';
import { DEFAULT_CONTROL_SOCKET } from '../api/control.js';

export interface ClientOptions {
  controlSocket: string;
  json?: boolean;
}

/** `--control-socket` (default: $NITRIDE_SOCKET, then the standard path). */
export function controlSocketOption(): Option {
  return new Option('--control-socket <path>', 'daemon control socket').env('NITRIDE_SOCKET').default(DEFAULT_CONTROL_SOCKET);
}

/** Add `--control-socket` and `--json` to a verb that talks to the daemon. */
export function clientVerb(command: Command): Command {
  return command.addOption(controlSocketOption()).option('--json', 'print JSON for scripts');
}

/** The client; `timeoutMs` for verbs the daemon may take longer than the default 60 s over. */
export function clientOf(options: ClientOptions, timeoutMs?: number): ControlClient {
  return new ControlClient({ socketPath: options.controlSocket, ...(timeoutMs ? { timeoutMs } : {}) });
}
