/**
 * The shipped systemd units, as `nitride install-units` writes them: systemd-analyze verify
 * finds nothing to say, and the exposure scores of `systemd-analyze security` meet the goals
 * (daemon ≤ 2.5, KMS ≤ 1.5). The real start/stop under systemd is in systemd-boot.test.ts.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, nitride, tempDir } from '../helpers/nitride.js';
import { run } from '../helpers/run.js';
import { hiddenFromUnits, renderUnits } from '../../src/cli/commands/install-units.js';

const hasAnalyze = statSync('/usr/bin/systemd-analyze', { throwIfNoEntry: false }) !== undefined;
const UNITS = ['nitride-kms.service', 'nitride-kms.socket', 'nitride.service'];

let dir: string;
let cleanup: () => void;
beforeAll(async () => {
  ({ dir, cleanup } = tempDir('nitride-units-'));
  const r = await nitride(['install-units', '--dir', dir]);
  expect(r.code, r.stderr).toBe(0);
});
afterAll(() => cleanup?.());

describe('install-units', () => {
  it('writes the three units, world-readable, with this installation paths', async () => {
    for (const unit of UNITS) expect(statSync(path.join(dir, unit)).mode & 0o777).toBe(0o644);
    const daemon = readFileSync(path.join(dir, 'nitride.service'), 'utf8');
    // The checkout's path is one word of the command line even if it holds a space.
    const word = (p: string) => (/\s/.test(p) ? `"${p}"` : p);
    expect(daemon).toContain(`ExecStart=${word(process.execPath)} ${word(CLI)} daemon `);
    expect(daemon).not.toContain('/opt/nitride/dist');
    expect(readFileSync(path.join(dir, 'nitride-kms.service'), 'utf8')).toContain(`ExecStart=${word(process.execPath)} ${word(path.join(ROOT, 'dist/cli/main.js'))} kms serve`);
  });
});

describe('install-units where the service cannot see the code', () => {
  it('warns for an installation the sandbox hides, and --root sets the path the units use', async () => {
    expect(hiddenFromUnits('/opt/nitride')).toBeNull();
    expect(hiddenFromUnits('/tmpfoo/nitride')).toBeNull();
    expect(hiddenFromUnits('/tmp/ci/nitride')).toMatch(/under \/tmp, which the units' PrivateTmp= hides/);
    expect(hiddenFromUnits('/home/me/nitride')).toMatch(/ProtectHome=/);
    const { dir: other, cleanup: done } = tempDir('nitride-units-root-');
    try {
      const r = await nitride(['install-units', '--dir', other, '--no-reload', '--root', '/srv/nitride']);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(path.join(other, 'nitride.service'), 'utf8')).toContain('/srv/nitride/dist/cli/main.js daemon');
      const bad = await nitride(['install-units', '--dir', other, '--no-reload', '--root', 'relative/dir']);
      expect(bad.code).toBe(2);
      expect(bad.stderr.trim()).toBe('nitride: --root must be an absolute path, not relative/dir');
    } finally {
      done();
    }
  });
});

describe.skipIf(!hasAnalyze)('systemd-analyze', () => {
  it('verify: every unit loads without a warning', async () => {
    const r = await run('systemd-analyze', ['verify', ...UNITS.map((u) => path.join(dir, u))]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim()).toBe('');
  });

  it('verify: units for an installation path with a space, a quote and a % load without a warning', async () => {
    const { dir: odd, cleanup: done } = tempDir('nitride-units-odd-');
    try {
      const root = '/opt/nitride "test" 100%c';
      for (const [name, text] of renderUnits(root)) writeFileSync(path.join(odd, name), text);
      const daemon = readFileSync(path.join(odd, 'nitride.service'), 'utf8');
      expect(daemon).toContain(`"/opt/nitride \\"test\\" 100%%c/dist/cli/main.js" daemon `);
      expect(daemon).toContain('Documentation=file:/opt/nitride%%20%%22test%%22%%20100%%25c/README.md');
      const r = await run('systemd-analyze', ['verify', ...UNITS.map((u) => path.join(odd, u))]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.trim()).toBe('');
    } finally {
      done();
    }
  });

  it('verify notices a broken unit (the check above can fail)', async () => {
    const broken = path.join(dir, 'broken.service');
    writeFileSync(broken, readFileSync(path.join(dir, 'nitride.service'), 'utf8').replace('[Service]', '[Service]\nFrobnicate=yes'));
    const r = await run('systemd-analyze', ['verify', broken]);
    expect(r.stderr).toMatch(/Unknown key 'Frobnicate'/);
  });

  const exposure = async (unit: string): Promise<number> => {
    const r = await run('systemd-analyze', ['security', '--offline=true', path.join(dir, unit)]);
    const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    return Number(m![1]);
  };

  it('security: the daemon exposure is at most 2.5', async () => {
    expect(await exposure('nitride.service')).toBeLessThanOrEqual(2.5);
  });

  it('security: the KMS exposure is at most 1.5', async () => {
    expect(await exposure('nitride-kms.service')).toBeLessThanOrEqual(1.5);
  });
});
