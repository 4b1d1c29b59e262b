/**
 * The `nitride` command line. Exit codes: 0 success, 1 runtime failure, 2 usage.
 * Errors are one line on stderr (`nitride: …`); `--debug` adds the stack.
 */
import { Command, CommanderError } from 'commander';
import { UsageError, oneLine } from '../common/errors.js';
import { VERSION } from '../common/package-info.js';
import { ApiError, localErrorOf } from '../control/client.js';
import { daemonCommand } from './commands/daemon.js';
import { kmsCommand } from './commands/kms.js';
import { logLevelCommand } from './commands/log-level.js';
import { statusCommand } from './commands/status.js';
import { metricsCommand } from './commands/metrics.js';
import { topCommand } from './commands/top.js';
import { installUnitsCommand } from './commands/install-units.js';
import { volumeCommand } from './commands/volume.js';
import { nbdProxyCommand } from './commands/nbd-proxy.js';
import { subnetCommand, vpcCommand } from './commands/vpc.js';
import { eniCommand } from './commands/eni.js';
import { peerCommand } from './commands/peer.js';
import { keyCommand } from './commands/key.js';
import { imageCommand } from './commands/image.js';
import { vmCommand } from './commands/vm.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command('nitride')
    .description('a userspace Nitro card: encrypted NBD volumes, an encrypted VPC, a KMS — controlled only through its API')
    .version(VERSION)
    .option('--debug', 'show stack traces on errors')
    .showSuggestionAfterError();
  for (const command of [daemonCommand(), statusCommand(), topCommand(), metricsCommand(), logLevelCommand()]) program.addCommand(command);
  program.addCommand(volumeCommand());
  program.addCommand(kmsCommand());
  for (const command of [vpcCommand(), subnetCommand(), eniCommand(), peerCommand(), keyCommand()]) program.addCommand(command);
  program.addCommand(nbdProxyCommand());
  for (const command of [vmCommand(), imageCommand()]) program.addCommand(command);
  program.addCommand(installUnitsCommand());
  // Every (sub)command reports usage errors as `nitride: …` lines and through us instead of
  // exiting on its own (settings on the program are not inherited by added commands).
  const override = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.configureOutput({ outputError: (text, write) => write(`nitride: ${text.replace(/^error: /, '')}`) });
    cmd.commands.forEach(override);
  };
  override(program);
  return program;
}

/** Run the CLI; resolves with the process exit code instead of exiting, so tests can call it. */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length <= 2) {
    program.outputHelp({ error: true });
    return EXIT_USAGE;
  }
  try {
    await program.parseAsync(argv);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version "fail" with exit code 0; real usage errors were already printed.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const failure = err instanceof ApiError ? localErrorOf(err) : err;
    const debug = program.opts<{ debug?: boolean }>().debug === true || argv.includes('--debug');
    process.stderr.write(`nitride: ${oneLine(failure)}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    return failure instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
}
