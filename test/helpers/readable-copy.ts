/**
 * A copy of the built package that any user can run: tests that run nitride as an unprivileged
 * user cannot use the checkout itself when it lives somewhere that user cannot traverse (root's
 * home is mode 0700). Copies what the CLI loads at run time: package.json, dist/, the native
 * addon and the production dependencies named in the lock file.
 */
import { chmodSync, cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './nitride.js';

export interface ReadableCopy {
  root: string;
  /** The copy's dist/cli/main.js. */
  cli: string;
  cleanup: () => void;
}

const ADDON = 'native/build/Release/nitride_native.node';

/** node_modules/… paths of the dependencies the package needs at run time. */
function productionModules(): string[] {
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  return Object.entries(lock.packages)
    .filter(([where, pkg]) => where.startsWith('node_modules/') && !pkg.dev)
    .map(([where]) => where);
}

/** Every directory 0755, every file readable by all (executable by all when its owner may run it). */
function openUp(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) openUp(p);
    else if (entry.isFile()) chmodSync(p, statSync(p).mode & 0o100 ? 0o755 : 0o644);
  }
}

export function readableCopy(): ReadableCopy {
  const root = mkdtempSync(path.join(tmpdir(), 'nitride-readable-'));
  try {
    for (const part of ['package.json', 'dist', ADDON, ...productionModules()]) {
      cpSync(path.join(ROOT, part), path.join(root, part), { recursive: true });
    }
    openUp(root);
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return { root, cli: path.join(root, 'dist/cli/main.js'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}
