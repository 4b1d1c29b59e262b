/**
 * The CLI answers at once because a client verb loads only the API contract (src/api), the
 * control/KMS clients, commander and its own output code; the daemon, the managers, the native
 * addon, zod, pino, prom-client and libsodium stay unloaded. Checked twice: by running every
 * client verb of the compiled CLI with a module recorder, and by reading the import statements.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { VERBS, buildProgram } from '../../src/cli/program.js';
import { CLI, ROOT, tempDir } from '../helpers/nitride.js';
import { run } from '../helpers/run.js';

const RECORDER = pathToFileURL(path.join(ROOT, 'test/helpers/record-modules.mjs')).href;

/** What a client verb must never load (paths under dist/, packages, the addon). */
const FORBIDDEN = [
  /\/dist\/(daemon|volume|vpc|vm|nbd|native|metrics|log)\//,
  /\/dist\/kms\/(server|keystore|local|sodium|blob)\.js$/,
  /\/dist\/control\/(server|validate|audit)\.js$/,
  /\/dist\/api\/[^/]+\.schema\.js$/,
  /\/dist\/cli\/lazy\//,
  /(^|\/)node_modules\/(zod|pino|prom-client|libsodium|libsodium-wrappers|smol-toml)\//,
  /^require:(zod|pino|prom-client|libsodium-wrappers|smol-toml)$/,
  /\.node$/,
];

/** Verbs that run a server: their code is imported only when they run (src/cli/lazy). */
const SERVER_VERBS = ['daemon', 'kms serve', 'nbd-proxy'];
/** Not a client either: it writes unit files (its imports are checked below with the rest). */
const LOCAL_VERBS = ['install-units'];

/** A stand-in value for each required option, so that every verb gets as far as its request. */
const OPTION_VALUES: Record<string, string> = {
  '--size': '1G',
  '--cidr': '10.0.0.0/16',
  '--vpc': 'vpc-0123456789abcdef0',
  '--subnet': 'subnet-0123456789abcdef0',
  '--name': 'n',
  '--endpoint': '192.0.2.1:4789',
  '--public-key': 'AAAA',
  '--kernel': '/boot/vmlinuz',
  '--protocol': 'all',
  '--rule-number': '100',
  '--action': 'allow',
};
const SG_RULE = ['sg-0123456789abcdef0', '--cidr', '0.0.0.0/0'];
const EXTRA_ARGS: Record<string, string[]> = {
  'log-level': ['info'],
  'eni modify': ['eni-0123456789abcdef0', '--source-dest-check', 'on'],
  'volume modify': ['vol-x', '--iops', '1000'],
  top: ['--count', '1'],
  'nacl create-entry': ['acl-0123456789abcdef0', '--ingress'],
  'flow-logs create': ['--eni', 'eni-0123456789abcdef0'],
  'nacl delete-entry': ['acl-0123456789abcdef0', '--ingress'],
  ...Object.fromEntries(['authorize-ingress', 'authorize-egress', 'revoke-ingress', 'revoke-egress'].map((v) => [`sg ${v}`, SG_RULE])),
};

interface Leaf {
  verb: string;
  command: Command;
}

function leaves(command: Command, prefix: string[] = []): Leaf[] {
  if (command.commands.length === 0) return [{ verb: prefix.join(' '), command }];
  return command.commands.flatMap((sub) => leaves(sub, [...prefix, sub.name()]));
}

/** The arguments that run `leaf` against a socket that does not exist. */
function invocation({ verb, command }: Leaf, socket: string): string[] {
  const args = [...verb.split(' ')];
  args.push(...(EXTRA_ARGS[verb] ?? command.registeredArguments.map(() => 'x')));
  for (const option of command.options.filter((o) => o.mandatory)) args.push(option.long!, OPTION_VALUES[option.long!] ?? 'x');
  const socketOption = command.options.some((o) => o.long === '--socket') ? '--socket' : '--control-socket';
  return [...args, socketOption, socket];
}

/** Run the CLI with the module recorder; the modules it loaded. */
async function modulesLoaded(args: string[], scratch: string, n: number): Promise<{ code: number | null; stderr: string; modules: string[] }> {
  const log = path.join(scratch, `modules-${n}.log`);
  const r = await run(process.execPath, ['--import', RECORDER, CLI, ...args], { env: { NITRIDE_MODULE_LOG: log } });
  const modules = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  return { code: r.code, stderr: r.stderr, modules };
}

const forbiddenIn = (modules: string[]) => modules.filter((m) => FORBIDDEN.some((re) => re.test(m)));

describe('CLI import rules', () => {
  it('every client verb runs up to its request without loading the daemon side', async () => {
    const scratch = tempDir('nitride-imports-');
    try {
      const all = leaves(await buildProgram());
      const client = all.filter((l) => !SERVER_VERBS.includes(l.verb) && !LOCAL_VERBS.includes(l.verb));
      expect(all.map((l) => l.verb)).toEqual(expect.arrayContaining([...SERVER_VERBS, ...LOCAL_VERBS]));
      const missing = path.join(scratch.dir, 'no-such.sock');
      let n = 0;
      const results: Array<{ verb: string; code: number | null; stderr: string; bad: string[] }> = [];
      // A few at a time: each is a node process.
      for (let i = 0; i < client.length; i += 4) {
        results.push(
          ...(await Promise.all(
            client.slice(i, i + 4).map(async (leaf) => {
              const r = await modulesLoaded(invocation(leaf, missing), scratch.dir, n++);
              return { verb: leaf.verb, code: r.code, stderr: r.stderr, bad: forbiddenIn(r.modules) };
            }),
          )),
        );
      }
      for (const r of results) {
        // Exit 1 with the one-line "cannot reach": the verb's action ran and sent its request.
        expect(r.stderr, r.verb).toMatch(/^nitride: cannot reach the nitride (daemon|KMS) at .*no-such\.sock \(is it running\?\)\n$/);
        expect(r.code, r.verb).toBe(1);
        expect(r.bad, r.verb).toEqual([]);
      }
      for (const args of [['--help'], ...[...SERVER_VERBS, ...LOCAL_VERBS].map((v) => [...v.split(' '), '--help'])]) {
        const r = await modulesLoaded(args, scratch.dir, n++);
        expect(r.code, args.join(' ')).toBe(0);
        expect(forbiddenIn(r.modules), args.join(' ')).toEqual([]);
      }
    } finally {
      scratch.cleanup();
    }
  }, 240_000); // a node process per verb, four at a time: minutes on a loaded 2-core box

  it('each verb of the catalogue is the command its module defines', async () => {
    for (const [verb, load] of Object.entries(VERBS)) expect((await load()).name()).toBe(verb);
  });

  it('the recorder sees what a server verb loads (the check above can fail)', async () => {
    const scratch = tempDir('nitride-imports-');
    try {
      const r = await modulesLoaded(['daemon', '--state-dir', '/proc/nitride-state', '--control-socket', path.join(scratch.dir, 'c.sock')], scratch.dir, 0);
      expect(r.code).toBe(1);
      const bad = forbiddenIn(r.modules);
      for (const expected of [/\/dist\/daemon\/daemon\.js$/, /\/dist\/cli\/lazy\/daemon\.js$/, /node_modules\/zod\//, /node_modules\/pino\//, /\.node$/]) {
        expect(bad.some((m) => expected.test(m)), String(expected)).toBe(true);
      }
    } finally {
      scratch.cleanup();
    }
  });
});

/** Files of src/ whose imports follow a rule, and the rule. */
const SRC = path.join(ROOT, 'src');
const CLIENT_SIDE = /^(api\/(?!.*\.schema\.ts$)[^/]+|cli\/(?!lazy\/).+|control\/client|kms\/(client|protocol|provider)|common\/(errors|units|package-info|durable-fs))(\.ts)?$/;

interface Import {
  from: string;
  target: string;
  typeOnly: boolean;
  dynamic: boolean;
}

function importsOf(file: string): Import[] {
  const text = readFileSync(path.join(SRC, file), 'utf8');
  const found: Import[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) found.push({ from: file, target: m[2]!, typeOnly: m[1] !== undefined, dynamic: false });
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push({ from: file, target: m[1]!, typeOnly: false, dynamic: true });
  return found;
}

/** `../api/vpc.js` from `cli/commands/eni.ts` → `api/vpc.ts`; packages and node: builtins as they are. */
function resolve(i: Import): string {
  if (!i.target.startsWith('.')) return i.target;
  return path.relative(SRC, path.resolve(SRC, path.dirname(i.from), i.target)).replace(/\.js$/, '.ts');
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(SRC, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join(dir, f));
}

describe('import statements', () => {
  it('the CLI (but its lazy verbs) imports only the contract, the clients, commander and its own code', () => {
    const wrong = sourceFiles('cli')
      .filter((f) => !f.startsWith('cli/lazy/'))
      .flatMap(importsOf)
      .filter((i) => {
        const target = resolve(i);
        const clientSide = target === 'commander' || target.startsWith('node:') || CLIENT_SIDE.test(target);
        // A lazy verb's code may be loaded when it runs, and its option types named.
        return !clientSide && !((i.dynamic || i.typeOnly) && target.startsWith('cli/lazy/'));
      });
    expect(wrong.map((i) => `${i.from} imports ${i.target}`)).toEqual([]);
  });

  it('the contract depends on nothing but itself, and only its schemas load zod', () => {
    const wrong = sourceFiles('api')
      .flatMap(importsOf)
      .filter((i) => {
        const target = resolve(i);
        if (target.startsWith('node:') || (target.startsWith('api/') && (i.from.endsWith('.schema.ts') || !target.endsWith('.schema.ts')))) return false;
        return !(target === 'zod' && i.from.endsWith('.schema.ts'));
      });
    expect(wrong.map((i) => `${i.from} imports ${i.target}`)).toEqual([]);
  });
});
