/**
 * The `nitride` command line. Exit codes: 0 success, 1 runtime failure, 2 usage.
 * Errors are one line on stderr (`nitride: …`); `--debug` adds the stack.
 */
import { Command, CommanderError } from 'commander';
import { UsageError, oneLine } from '../common/errors.js';
import { VERSION } from '../common/package-info.js';
import { ApiError, localErrorOf } from '../control/client.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * Every verb, in the order help lists them, and the module defining it. A run imports only its
 * verb's module (each import costs start-up time); help, typos and no verb take them all.
 */
export const VERBS: Record<string, () => Promise<Command>> = {
  daemon: async () => (await import('./commands/daemon.js')).daemonCommand(),
  status: async () => (await import('./commands/status.js')).statusCommand(),
  top: async () => (await import('./commands/top.js')).topCommand(),
  metrics: async () => (await import('./commands/metrics.js')).metricsCommand(),
  'log-level': async () => (await import('./commands/log-level.js')).logLevelCommand(),
  volume: async () => (await import('./commands/volume.js')).volumeCommand(),
  snapshot: async () => (await import('./commands/snapshot.js')).snapshotCommand(),
  kms: async () => (await import('./commands/kms.js')).kmsCommand(),
  vpc: async () => (await import('./commands/vpc.js')).vpcCommand(),
  subnet: async () => (await import('./commands/vpc.js')).subnetCommand(),
  eni: async () => (await import('./commands/eni.js')).eniCommand(),
  sg: async () => (await import('./commands/sg.js')).sgCommand(),
  nacl: async () => (await import('./commands/nacl.js')).naclCommand(),
  'flow-logs': async () => (await import('./commands/flow-logs.js')).flowLogsCommand(),
  peer: async () => (await import('./commands/peer.js')).peerCommand(),
  fleet: async () => (await import('./commands/fleet.js')).fleetCommand(),
  key: async () => (await import('./commands/key.js')).keyCommand(),
  'nbd-proxy': async () => (await import('./commands/nbd-proxy.js')).nbdProxyCommand(),
  vm: async () => (await import('./commands/vm.js')).vmCommand(),
  image: async () => (await import('./commands/image.js')).imageCommand(),
  'install-units': async () => (await import('./commands/install-units.js')).installUnitsCommand(),
};

/** The program with the commands of `verbs` (default: all). */
export async function buildProgram(verbs: readonly string[] = Object.keys(VERBS)): Promise<Command> {
  const program = new Command('nitride')
    .description('a userspace Nitro card: encrypted NBD volumes, an encrypted VPC, a KMS — controlled only through its API')
    .version(VERSION)
    .option('--debug', 'show stack traces on errors')
    .showSuggestionAfterError();
  for (const command of await Promise.all(verbs.map((verb) => VERBS[verb]!()))) program.addCommand(command);
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
  // The program's own options take no values: the first other word is the verb.
  const verb = argv.slice(2).find((arg) => !arg.startsWith('-'));
  const program = await buildProgram(verb !== undefined && Object.hasOwn(VERBS, verb) ? [verb] : undefined);
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
