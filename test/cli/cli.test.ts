import { describe, expect, it } from 'vitest';
import { nitride } from '../helpers/nitride.js';

const oneLine = (s: string) => s.trim().split('\n').length === 1;

describe('nitride CLI conventions', () => {
  it('--help lists the verbs and exits 0', async () => {
    const r = await nitride(['--help']);
    expect(r.code).toBe(0);
    for (const verb of ['daemon', 'status', 'log-level']) expect(r.stdout).toMatch(new RegExp(`^\\s+${verb}\\b`, 'm'));
  });

  it('every verb has --help', async () => {
    for (const verb of ['daemon', 'status', 'log-level']) {
      const r = await nitride([verb, '--help']);
      expect(r.code, verb).toBe(0);
      expect(r.stdout).toContain(`Usage: nitride ${verb}`);
    }
    const status = await nitride(['status', '--help']);
    expect(status.stdout).toContain('--control-socket');
    expect(status.stdout).toContain('--json');
  });

  it('unknown verbs and flags: one line, exit 2, no stack trace', async () => {
    for (const args of [['frobnicate'], ['status', '--frob'], ['log-level', 'loud'], ['daemon', '--log-level', 'loud'], []]) {
      const r = await nitride(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      if (args.length) expect(oneLine(r.stderr), r.stderr).toBe(true);
    }
    const r = await nitride(['statu']);
    expect(r.stderr).toMatch(/^nitride: unknown command 'statu'/);
    const nested = await nitride(['status', '--frob']);
    expect(nested.stderr).toMatch(/^nitride: unknown option '--frob'/);
  });

  it('no daemon: one-line error and exit 1', async () => {
    const r = await nitride(['status', '--control-socket', '/nonexistent/control.sock']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('nitride: cannot reach the nitride daemon at /nonexistent/control.sock (is it running?)');
    const env = await nitride(['status'], { NITRIDE_SOCKET: '/nonexistent/env.sock' });
    expect(env.stderr).toContain('/nonexistent/env.sock');
  });

  it('--debug adds the stack trace', async () => {
    const r = await nitride(['--debug', 'status', '--control-socket', '/nonexistent/control.sock']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it('daemon: a missing config file or unusable state dir is one line and exit 1', async () => {
    const missing = await nitride(['daemon', '--config', '/nonexistent/nitride.toml', '--state-dir', '/tmp/x', '--control-socket', '/tmp/x.sock']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toMatch(/^nitride: cannot read config file \/nonexistent\/nitride.toml: .*ENOENT/);
    const state = await nitride(['daemon', '--state-dir', '/proc/nitride-state', '--control-socket', '/tmp/nitride-unused.sock']);
    expect(state.code).toBe(1);
    expect(state.stderr.trim()).toMatch(/^nitride: state directory \/proc\/nitride-state is not usable/);
  });
});
