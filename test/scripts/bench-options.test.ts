/**
 * Every benchmark answers a bad command line with one line on stderr and exit 2, before any work:
 * nothing installed, built, started or measured (the tools that would do it are stubs on PATH
 * that note being called).
 */
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../helpers/nitride.js';
import { run } from '../helpers/run.js';

const TOOLS = ['apt-get', 'dpkg-query', 'npm', 'npx', 'mktemp', 'ip', 'fio', 'iperf3', 'qemu-img', 'nbdkit', 'systemd-nspawn', 'sync', 'ceph', 'ceph-mon', 'rbd', 'qemu-storage-daemon', 'etcd', 'etcdctl', 'openssl'];
let stubs: { dir: string; cleanup: () => void };
let called: string;
beforeAll(() => {
  stubs = tempDir('nitride-bench-stubs-');
  called = path.join(stubs.dir, 'called');
  for (const tool of TOOLS) {
    writeFileSync(path.join(stubs.dir, tool), `#!/bin/sh\necho ${tool} >> '${called}'\nexit 1\n`);
    chmodSync(path.join(stubs.dir, tool), 0o755);
  }
});
afterAll(() => stubs?.cleanup());

const BENCHES: Array<[name: string, command: string[], badValue: string[], title?: string]> = [
  ['bench-block', [path.join(ROOT, 'scripts/bench-block.sh')], ['--reps', '0']],
  // --ceph has its own target group: a local target is a bad value there (no cluster started).
  ['bench-block', [path.join(ROOT, 'scripts/bench-block.sh'), '--ceph'], ['--targets', 'nbdkit-file'], 'bench-block --ceph'],
  // --limits too: its own targets, and its cells pick their jobs (a --jobs list is refused).
  ['bench-block', [path.join(ROOT, 'scripts/bench-block.sh'), '--limits'], ['--targets', 'nbdkit-file'], 'bench-block --limits'],
  ['bench-block', [path.join(ROOT, 'scripts/bench-block.sh'), '--limits'], ['--jobs', 'read-1m-qd8'], 'bench-block --limits --jobs'],
  ['bench-block', [path.join(ROOT, 'scripts/bench-block.sh'), '--limits'], ['--ceph'], 'bench-block --limits --ceph'],
  ['bench-cli', [path.join(ROOT, 'scripts/bench-cli.sh')], ['--runs', '0']],
  ['bench-fleet', [path.join(ROOT, 'scripts/bench-fleet.sh')], ['--creates', '0']],
  ['bench-fleet', [path.join(ROOT, 'scripts/bench-fleet.sh')], ['--phases', 'net,warp'], 'bench-fleet --phases'],
  ['bench-net', [path.join(ROOT, 'scripts/bench-net.sh')], ['--paths', 'nitride,carrier-pigeon']],
  // --limits has its own paths and cells: a path of the plain mode is a bad value there.
  ['bench-net', [path.join(ROOT, 'scripts/bench-net.sh'), '--limits'], ['--paths', 'openvpn'], 'bench-net --limits'],
  ['bench-net', [path.join(ROOT, 'scripts/bench-net.sh'), '--limits'], ['--cells', 'bw1g,warp'], 'bench-net --limits --cells'],
  ['bench-net', [path.join(ROOT, 'scripts/bench-net.sh')], ['--cells', 'bw1g'], 'bench-net --cells without --limits'],
  ['bench-restart', [path.join(ROOT, 'scripts/bench-restart.sh')], ['--reps', 'many']],
  ['bench-vm', [path.join(ROOT, 'scripts/bench-vm.sh')], ['--reps', '0']],
  ['bench-vm', [path.join(ROOT, 'scripts/bench-vm.sh')], ['--phases', 'boot,warp'], 'bench-vm --phases'],
  ['bench-volume', [process.execPath, path.join(ROOT, 'scripts/bench-volume.mjs')], ['--unit', '1000']],
  ['bench-xts', [process.execPath, path.join(ROOT, 'scripts/bench-xts.mjs')], ['--rounds', '0']],
  ['bench-gcm', [process.execPath, path.join(ROOT, 'scripts/bench-gcm.mjs')], ['--rounds', '0']],
];


describe('benchmark command lines', () => {
  for (const [name, [command, ...args], badValue, title = name] of BENCHES) {
    it(`${title}: an unknown option or a bad value is one line and exit 2, before any work`, async () => {
      rmSync(called, { force: true }); // this case's calls only: one bench that starts work fails itself, not the next ones
      for (const [extra, message] of [
        [['--bogus'], /^Unknown option '--bogus'/],
        [badValue, /^(--\S+ must be|unknown \S+ ')/],
        [['stray'], /^Unexpected argument 'stray'/],
      ] as const) {
        const r = await run(command!, [...args, ...extra], { env: { PATH: `${stubs.dir}:${process.env.PATH}` } });
        expect(r.code, r.stderr).toBe(2);
        expect(r.stdout).toBe('');
        const lines = r.stderr.trimEnd().split('\n');
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]!.slice(`${name}: `.length)).toMatch(message);
        expect(lines[0]!.startsWith(`${name}: `)).toBe(true);
      }
      expect(existsSync(called) ? readFileSync(called, 'utf8') : '').toBe('');
    });
  }
});
