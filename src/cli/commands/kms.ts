/**
 * `nitride kms …`: run the KMS (`serve`) and manage its master keys. No verb ever prints
 * key material: data keys are for the daemon, through `KmsClient`.
 */
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { LOG_LEVELS } from '../../api/daemon.js';
import { KmsClient } from '../../kms/client.js';
import { DEFAULT_KMS_SOCKET, DEFAULT_KMS_STATE_DIR, GRANT_OPERATIONS, type Grant, type GrantOperation, type KmsStatus } from '../../kms/protocol.js';
import type { KeyMetadata } from '../../kms/provider.js';
import { emit, renderFields, renderTable } from '../output.js';
import type { KmsServeOptions } from '../lazy/kms.js';

interface KmsClientCliOptions {
  socket: string;
  json?: boolean;
}

export function kmsCommand(): Command {
  const kms = new Command('kms').description('the key management service: run it, and manage its master keys');
  kms.addCommand(serveCommand());

  kms.addCommand(
    clientVerb(new Command('create-key').description('create a master key and print its id'))
      .option('--alias <alias>', 'alias for the key (alias/<name>)')
      .option('--description <text>', 'free text for operators')
      .action(async (options: KmsClientCliOptions & { alias?: string; description?: string }) => {
        const meta = await client(options).createKey({
          ...(options.alias !== undefined ? { alias: options.alias } : {}),
          ...(options.description !== undefined ? { description: options.description } : {}),
        });
        emit(options, meta, (m) => m.keyId);
      }),
  );

  kms.addCommand(
    clientVerb(new Command('list-keys').description('list master keys (deleted ones as tombstones)')).action(async (options: KmsClientCliOptions) => {
      const keys = await client(options).listKeys();
      emit(options, { keys }, ({ keys: rows }) =>
        rows.length === 0
          ? 'no keys'
          : renderTable(rows, {
              'key id': (k) => k.keyId,
              state: (k) => k.state,
              version: (k) => k.currentVersion,
              aliases: (k) => k.aliases.join(',') || undefined,
              created: (k) => k.createdAt,
              description: (k) => k.description || undefined,
            }),
      );
    }),
  );

  kms.addCommand(
    keyVerb('describe-key', 'show one master key', (c, ref) => c.describeKey(ref)),
  );
  kms.addCommand(keyVerb('enable-key', 'enable a disabled key', (c, ref) => c.enableKey(ref)));
  kms.addCommand(keyVerb('disable-key', 'disable a key: nothing wrapped under it can be used (volumes cannot attach)', (c, ref) => c.disableKey(ref)));
  kms.addCommand(keyVerb('rotate-key', 'add a new key version (new wraps use it; old blobs still decrypt)', (c, ref) => c.rotateKey(ref)));
  kms.addCommand(keyVerb('cancel-deletion', 'cancel a scheduled deletion (the key comes back disabled)', (c, ref) => c.cancelKeyDeletion(ref)));
  kms.addCommand(
    clientVerb(
      new Command('schedule-deletion')
        .description('destroy the key material after a waiting period: everything wrapped under it becomes unrecoverable')
        .addArgument(new Argument('<key>', 'key id or alias')),
    )
      .option('--days <n>', 'waiting period in days (7-30, or 0-30 on a KMS started with --allow-immediate-deletion)', parseDays)
      .action(async (ref: string, options: KmsClientCliOptions & { days?: number }) => {
        const meta = await client(options).scheduleKeyDeletion(ref, options.days);
        emit(options, meta, renderKey);
      }),
  );
  kms.addCommand(
    clientVerb(new Command('status').description('KMS status; with a network listener, its public key (for the daemons\' --kms-public-key) and refusal counters')).action(
      async (options: KmsClientCliOptions) => {
        const st = await client(options).status();
        emit(options, st, renderStatus);
      },
    ),
  );
  kms.addCommand(grantCommand());
  return kms;
}

function grantCommand(): Command {
  const grant = new Command('grant').description('which host (by its public key) may use which master key over the network');
  grant.addCommand(
    clientVerb(new Command('create').description('let a host call OPERATIONS on a key, for contexts containing every --context pair'))
      .requiredOption('--host <id>', 'host id (as named in the audit log)')
      .requiredOption('--public-key <base64>', 'the host\'s public key (`nitride key show` on that host)')
      .requiredOption('--key <key>', 'key id or alias')
      .option('--operations <list>', `comma-separated: ${GRANT_OPERATIONS.join(',')}`, parseOperations, ['GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'Decrypt', 'ReEncrypt', 'DescribeKey'] as GrantOperation[])
      .option('--context <k=v>', 'required context pair; a value ending in * matches by prefix (repeatable)', collectContext, {} as Record<string, string>)
      .action(async (options: KmsClientCliOptions & { host: string; publicKey: string; key: string; operations: GrantOperation[]; context: Record<string, string> }) => {
        const g = await client(options).createGrant({ hostId: options.host, publicKey: options.publicKey, keyId: options.key, operations: options.operations, context: options.context });
        emit(options, g, (x) => x.grantId);
      }),
  );
  grant.addCommand(
    clientVerb(new Command('list').description('list grants')).action(async (options: KmsClientCliOptions) => {
      const grants = await client(options).listGrants();
      emit(options, { grants }, ({ grants: rows }) => (rows.length === 0 ? 'no grants' : renderTable(rows, grantColumns)));
    }),
  );
  grant.addCommand(
    clientVerb(new Command('revoke').description('remove a grant (the host\'s next call under it is refused)').addArgument(new Argument('<grant>', 'grant id'))).action(
      async (id: string, options: KmsClientCliOptions) => {
        const g = await client(options).revokeGrant(id);
        emit(options, g, (x) => `revoked ${x.grantId}`);
      },
    ),
  );
  return grant;
}

const grantColumns = {
  grant: (g: Grant) => g.grantId,
  host: (g: Grant) => g.hostId,
  key: (g: Grant) => g.keyId,
  operations: (g: Grant) => g.operations.join(','),
  context: (g: Grant) => Object.entries(g.context).map(([k, v]) => `${k}=${v}`).join(',') || '(any)',
  'public key': (g: Grant) => g.publicKey,
};

function renderStatus(st: KmsStatus): string {
  return renderFields({
    version: st.version,
    pid: st.pid,
    'state dir': st.stateDir,
    socket: st.socket,
    keys: st.keys,
    listen: st.network?.listen,
    'public key': st.network?.publicKey,
    grants: st.network?.grants,
    connections: st.network ? `${st.network.connections.accepted} accepted, ${st.network.connections.open} open, ${st.network.connections.refused} refused` : undefined,
    'records dropped': st.network ? `${st.network.records.replayed} replayed, ${st.network.records.forged} forged, ${st.network.records.malformed} malformed` : undefined,
  });
}

function parseOperations(value: string): GrantOperation[] {
  const ops = value.split(',').map((o) => o.trim()).filter(Boolean);
  for (const o of ops) if (!(GRANT_OPERATIONS as readonly string[]).includes(o)) throw new InvalidArgumentError(`unknown operation '${o}' (one of ${GRANT_OPERATIONS.join(', ')})`);
  return ops as GrantOperation[];
}

function collectContext(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) throw new InvalidArgumentError('must be KEY=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function serveCommand(): Command {
  return new Command('serve')
    .description('run the KMS in the foreground until SIGTERM/SIGINT')
    .addOption(new Option('--state-dir <dir>', 'key store, audit log (kept apart from the daemon state)').env('NITRIDE_KMS_STATE_DIR').default(DEFAULT_KMS_STATE_DIR))
    .addOption(new Option('--socket <path>', 'KMS socket').env('NITRIDE_KMS_SOCKET').default(DEFAULT_KMS_SOCKET))
    .addOption(new Option('--log-level <level>', 'minimum log level').choices(LOG_LEVELS).default('info'))
    .option('--allow-immediate-deletion', 'allow deletion waiting periods below 7 days, down to 0 (tests only)')
    .option('--listen <host:port>', 'also serve hosts over TCP (Noise-authenticated host keys, checked against grants)')
    .action(async (options: KmsServeOptions) => {
      const { serveKms } = await import('../lazy/kms.js');
      await serveKms(options);
    });
}

/** `--socket` (env NITRIDE_KMS_SOCKET) and `--json`, like `clientVerb` for the daemon. */
function clientVerb(command: Command): Command {
  return command
    .addOption(new Option('--socket <path>', 'KMS socket').env('NITRIDE_KMS_SOCKET').default(DEFAULT_KMS_SOCKET))
    .option('--json', 'print JSON for scripts');
}

function client(options: KmsClientCliOptions): KmsClient {
  return new KmsClient({ socketPath: options.socket });
}

function keyVerb(name: string, description: string, run: (c: KmsClient, ref: string) => Promise<KeyMetadata>): Command {
  return clientVerb(new Command(name).description(description).addArgument(new Argument('<key>', 'key id or alias'))).action(
    async (ref: string, options: KmsClientCliOptions) => {
      emit(options, await run(client(options), ref), renderKey);
    },
  );
}

function renderKey(k: KeyMetadata): string {
  return renderFields({
    'key id': k.keyId,
    state: k.state,
    aliases: k.aliases.join(', ') || undefined,
    description: k.description || undefined,
    created: k.createdAt,
    version: k.currentVersion,
    rotated: k.rotatedAt,
    'deletion date': k.deletionDate,
    deleted: k.deletedAt,
  });
}

function parseDays(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number of days');
  return Number(value);
}
