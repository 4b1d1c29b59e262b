/**
 * `nitride install-units`: install the systemd units (nitride.service, nitride-kms.service,
 * nitride-kms.socket) shipped in `systemd/`, with the paths of this installation filled in
 * (the package directory for /opt/nitride, this node for /usr/bin/node), then reload systemd.
 */
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { RuntimeError, UsageError, oneLine } from '../../common/errors.js';
import { PACKAGE_ROOT } from '../../common/package-info.js';
import { pathToFileURL } from 'node:url';

export const UNIT_SOURCE_DIR = path.join(PACKAGE_ROOT, 'systemd');
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
/** The paths the shipped units are written for. */
const SHIPPED_ROOT = '/opt/nitride';
const SHIPPED_NODE = '/usr/bin/node';

/** The unit files shipped, name → text with this installation's paths. */
export function renderUnits(root = PACKAGE_ROOT, node = process.execPath): Map<string, string> {
  const units = new Map<string, string>();
  for (const name of readdirSync(UNIT_SOURCE_DIR).filter((n) => /\.(service|socket)$/.test(n)).sort()) {
    const text = readFileSync(path.join(UNIT_SOURCE_DIR, name), 'utf8');
    units.set(name, text.split('\n').map((line) => withPaths(line, root, node)).join('\n'));
  }
  return units;
}

/** A unit line with this installation's paths, escaped for systemd (a checkout path may hold a space or a %). */
function withPaths(line: string, root: string, node: string): string {
  if (line.startsWith('Documentation=')) return line.replaceAll(`file:${SHIPPED_ROOT}/`, `file:${pathToFileURL(root).pathname.replaceAll('%', '%%')}/`);
  if (!line.startsWith('ExecStart=')) return line;
  const word = (w: string) => (w === SHIPPED_NODE ? commandWord(node) : w.startsWith(`${SHIPPED_ROOT}/`) ? commandWord(root + w.slice(SHIPPED_ROOT.length)) : w);
  return `ExecStart=${line.slice('ExecStart='.length).split(' ').map(word).join(' ')}`;
}

/** One word of a command line: quoted when it holds a space, a quote or a backslash; specifiers and $ doubled. */
function commandWord(word: string): string {
  const quoted = /[\s"'\\]/.test(word) ? `"${word.replace(/["\\]/g, '\\$&')}"` : word;
  return quoted.replace(/[%$]/g, '$&$&');
}

/** Trees the units' sandboxing hides from the service (PrivateTmp=, ProtectHome=). */
const HIDDEN_FROM_UNITS = ['/tmp', '/var/tmp', '/home', '/root', '/run/user'];

/** Why the units could not run code installed at `root`, or null when they can. */
export function hiddenFromUnits(root: string): string | null {
  const hidden = HIDDEN_FROM_UNITS.find((dir) => root === dir || root.startsWith(dir + '/'));
  if (!hidden) return null;
  const setting = hidden.endsWith('tmp') ? 'PrivateTmp=' : 'ProtectHome=';
  return `${root} is under ${hidden}, which the units' ${setting} hides from the service: install nitride under /opt/nitride, or pass --root with the path the service will see`;
}

interface InstallOptions {
  dir: string;
  root: string;
  reload: boolean;
  enable?: boolean;
}

export function installUnitsCommand(): Command {
  return new Command('install-units')
    .description('install the systemd units (daemon, KMS, KMS socket) for this installation and reload systemd')
    .option('--dir <dir>', 'where to write the unit files', DEFAULT_UNIT_DIR)
    .option('--no-reload', 'do not run systemctl daemon-reload')
    .option('--enable', 'also enable them (started at boot): nitride-kms.socket and nitride.service')
    .option('--root <dir>', 'this installation as the service will see it (default: where it is)', PACKAGE_ROOT)
    .action(async (options: InstallOptions) => {
      if (!path.isAbsolute(options.root)) throw new UsageError(`--root must be an absolute path, not ${options.root}`);
      const hidden = hiddenFromUnits(path.resolve(options.root));
      if (hidden) process.stderr.write(`nitride: warning: ${hidden}\n`);
      const units = renderUnits(path.resolve(options.root));
      // Imported here, not at the top: every other verb would pay for loading them.
      const { writeFileAtomic } = await import('../../common/durable-fs.js');
      await fs.mkdir(options.dir, { recursive: true });
      for (const [name, text] of units) {
        await writeFileAtomic(path.join(options.dir, name), text, 0o644);
        process.stdout.write(`installed ${path.join(options.dir, name)}\n`);
      }
      const systemdRuns = await fs.stat('/run/systemd/system').then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (!systemdRuns) {
        if (options.reload || options.enable) process.stdout.write('systemd is not running here: skipped daemon-reload/enable\n');
        return;
      }
      if (options.reload) await systemctl(['daemon-reload']);
      if (options.enable) await systemctl(['enable', 'nitride-kms.socket', 'nitride.service']);
    });
}

async function systemctl(args: string[]): Promise<void> {
  const [{ execFile }, { promisify }] = await Promise.all([import('node:child_process'), import('node:util')]);
  try {
    await promisify(execFile)('systemctl', args, { timeout: 60_000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new RuntimeError(`systemctl ${args.join(' ')} failed: ${stderr || oneLine(err)}`, 'SYSTEMCTL');
  }
}
