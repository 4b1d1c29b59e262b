// Shared helpers for the end-to-end benchmarks under scripts/bench/ (plain Node ESM, no
// dependencies): child processes that are always cleaned up, scratch directories, /proc CPU
// accounting, statistics, text tables, a hand-written SVG bar chart, host facts, and a tiny
// HTTP client for the daemon's control socket.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --------------------------------------------------------------------------- command line

/**
 * A benchmark's own command line: its `options` (node:util parseArgs) and --help, which prints
 * `usage` and exits 0. An unknown option, a missing value or a stray argument is one line on
 * stderr and exit 2, never a stack trace.
 */
export function benchOptions(name, usage, options) {
  let values;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h', default: false } } }));
  } catch (err) {
    // parseArgs' first sentence ("Unknown option '--bogus'"); the rest is advice on quoting.
    usageExit(name, err.message.split(/\.\s/)[0]);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  return values;
}

/** {@link benchOptions} plus the options every end-to-end benchmark takes (--scratch, --out, --cli, --keep). */
export function benchArgs(name, usage, options) {
  return benchOptions(name, usage, {
    ...options,
    scratch: { type: 'string' }, // an existing empty directory (the shell wrapper makes one)
    out: { type: 'string' },
    cli: { type: 'string', default: path.join(ROOT, 'dist/cli/main.js') },
    keep: { type: 'boolean', default: false },
  });
}

/**
 * Called by a benchmark once its options are checked: the wrapper script's first run
 * (NITRIDE_BENCH_CHECK_ARGS=1) ends here, so a bad option is answered before anything is
 * installed, built or started.
 */
export function optionsChecked() {
  if (process.env.NITRIDE_BENCH_CHECK_ARGS === '1') process.exit(0);
}

/** Print `name: message` on stderr, one line, and exit 2 (a usage error). */
export function usageExit(name, message) {
  console.error(`${name}: ${message} (--help for usage)`);
  process.exit(2);
}

/** A positive number option: `dflt` when absent; anything else exits 2. */
export function positiveOption(name, value, dflt, what) {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) usageExit(name, `--${what} must be a positive number`);
  return n;
}

/** The items of `all` (objects with an `id`) named by a comma list, all when absent; an unknown id exits 2. */
export function pickById(name, all, list, what) {
  if (!list) return all;
  const ids = list.split(',').map((s) => s.trim()).filter(Boolean);
  for (const id of ids) if (!all.some((x) => x.id === id)) usageExit(name, `unknown ${what} '${id}'`);
  return all.filter((x) => ids.includes(x.id));
}

// ------------------------------------------------------------------------------ processes

/**
 * A scratch directory plus every long-running child started in it. `cleanup()` stops the
 * children (SIGTERM, then SIGKILL after a grace period) and removes the directory; it runs once,
 * on normal exit, on failure and on SIGINT/SIGTERM (see `installSignalCleanup`). Each child's pid
 * is also written to `<dir>/pids/<name>.pid` so that a wrapper shell script can reap leftovers
 * if this process itself is killed hard.
 */
export class Scratch {
  constructor(dir, { keep = false } = {}) {
    this.dir = dir;
    this.keep = keep;
    this.children = new Map();
    this.cleaned = undefined;
    this.hooks = [];
    mkdirSync(path.join(dir, 'pids'), { recursive: true });
    mkdirSync(path.join(dir, 'logs'), { recursive: true });
  }

  /** Create a fresh scratch directory under `parent`. */
  static create(parent, prefix, opts) {
    mkdirSync(parent, { recursive: true });
    return new Scratch(mkdtempSync(path.join(parent, prefix)), opts);
  }

  path(...parts) {
    return path.join(this.dir, ...parts);
  }

  /** Start a long-running child; stdout+stderr go to logs/<name>.log. */
  start(name, cmd, args, { env } = {}) {
    const logFile = this.path('logs', `${name}.log`);
    const log = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
    child.on('error', () => {});
    const entry = { name, child, exited, logFile, cmd: [cmd, ...args].join(' ') };
    this.children.set(name, entry);
    writeFileSync(this.path('pids', `${name}.pid`), `${child.pid}\n`);
    exited.then(() => rmSync(this.path('pids', `${name}.pid`), { force: true }));
    return entry;
  }

  /** Stop one child: `signal`, then SIGKILL after `graceMs`. Resolves with its exit status. */
  async stop(name, signal = 'SIGTERM', graceMs = 10_000) {
    const entry = this.children.get(name);
    if (!entry) return undefined;
    this.children.delete(name);
    if (entry.child.exitCode === null && entry.child.signalCode === null) {
      entry.child.kill(signal);
      const timer = setTimeout(() => entry.child.kill('SIGKILL'), graceMs);
      const status = await entry.exited;
      clearTimeout(timer);
      return status;
    }
    return entry.exited;
  }

  /** The last `lines` lines of a child's log (for error messages). */
  tail(name, lines = 15) {
    const file = this.path('logs', `${name}.log`);
    if (!existsSync(file)) return '';
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** Run `fn` at cleanup after the children are stopped, before the directory goes (a cluster living in it). */
  onCleanup(fn) {
    this.hooks.push(fn);
  }

  cleanup() {
    this.cleaned ??= (async () => {
      // Stop in reverse start order (clients of the KMS before the KMS).
      const names = [...this.children.keys()].reverse();
      for (const name of names) await this.stop(name, 'SIGTERM', 5000).catch(() => {});
      for (const fn of this.hooks.reverse()) await Promise.resolve().then(fn).catch(() => {});
      if (!this.keep) rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.cleaned;
  }
}

/** On SIGINT/SIGTERM: clean up and exit 130/143. */
export function installSignalCleanup(scratch, onSignal) {
  let fired = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (fired) return;
      fired = true;
      onSignal?.(sig);
      process.stderr.write(`\n${sig}: stopping servers and removing ${scratch.dir}\n`);
      scratch.cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
}

/** Run a command to completion; rejects on a non-zero exit unless `allowFail`. */
export function run(cmd, args, { allowFail = false, env, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    if (input !== undefined) child.stdin.end(input);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 && !allowFail) reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${(stderr || stdout).trim().split('\n').slice(-5).join(' | ')}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

/** Poll `fn` until it returns truthy (or stops throwing); rejects after `timeoutMs`. */
export async function waitFor(what, fn, { timeoutMs = 20_000, intervalMs = 50, alive } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    if (alive && !alive()) throw new Error(`${what}: process exited`);
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
    await sleep(intervalMs);
  }
}

/** A loopback TCP port nobody listens on now (the caller's server binds it a moment later). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves true when something accepts connections on the Unix socket `file`. */
export function canConnect(file) {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// ------------------------------------------------------------------------- /proc accounting

const TICK = 100; // USER_HZ on Linux

/** CPU seconds (user+system, all threads) of a process so far; 0 if it is gone. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return 0;
  }
}

/** A process's thread ids ([] once it has exited). */
function taskIds(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
}

/** Per-thread CPU seconds of a process: [{ tid, name, cpu }]. */
export function threadCpu(pid) {
  const out = [];
  for (const tid of taskIds(pid)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ tid: Number(tid), name, cpu: (Number(f[11]) + Number(f[12])) / TICK });
    } catch {
      /* thread ended */
    }
  }
  return out;
}

/**
 * CPU nanoseconds so far of a process's threads whose name starts with one of `prefixes` (all
 * threads without), from /proc/<pid>/task/<tid>/schedstat: exact to the ns, where stat's
 * utime/stime move in 10 ms ticks. Map tid -> ns.
 */
export function threadCpuNs(pid, prefixes = []) {
  const out = new Map();
  for (const tid of taskIds(pid)) {
    try {
      if (prefixes.length) {
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        if (!prefixes.some((p) => name.startsWith(p))) continue;
      }
      out.set(Number(tid), Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
    } catch {
      /* thread ended */
    }
  }
  return out;
}

/** CPU ns between two threadCpuNs() maps: threads in both, and those born in between whole. */
export function threadCpuNsDelta(before, after) {
  let ns = 0;
  for (const [tid, v] of after) ns += v - (before.get(tid) ?? 0);
  return ns;
}

// ---------------------------------------------------------------------------- statistics

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * A goal "median of pairs <= bound" with that median's confidence interval (medianCi): met on
 * the median, resolved when the interval lies wholly on one side of the bound.
 */
export function ciGoal(goal, value, bound, ci) {
  return { goal, value, met: value !== null && value <= bound, resolved: ci ? ci.hi <= bound || ci.lo > bound : false, ci, bound };
}

/** How a ciGoal's line ends when printed: whether its interval resolved it ('' for other goals). */
export function ciGoalNote(g) {
  if (g.resolved === undefined) return '';
  const ci = g.ci ? `${g.ci.lo.toFixed(3)}..${g.ci.hi.toFixed(3)}` : '-';
  return g.resolved ? `; resolved: 95 % CI ${ci}` : `; NOT resolved by the pairs: 95 % CI ${ci} holds ${g.bound}`;
}

/**
 * A distribution-free confidence interval of the median (order statistics, binomial at p = 1/2):
 * [x(k), x(n+1-k)] for the largest k with P(Binomial(n, 1/2) < k) <= (1 - level) / 2, so it
 * covers at least `level`. { lo, hi, level (the actual coverage) }; null below 6 values (no
 * interval at 95 % exists).
 */
export function medianCi(values, level = 0.95) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = v.length;
  let below = 0; // P(B < k)
  let k = 0;
  let pk = 0.5 ** n; // P(B = k)
  while (k < n && below + pk <= (1 - level) / 2) {
    below += pk;
    pk = (pk * (n - k)) / (k + 1);
    k++;
  }
  if (k === 0) return null;
  return { lo: v[k - 1], hi: v[n - k], level: 1 - 2 * below };
}

/** Compact human number: 1234 → "1234", 12345 → "12.3k", 1234567 → "1.23M". */
export function human(n, digits = 3) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const a = Math.abs(n);
  if (a >= 1e6) return `${(n / 1e6).toPrecision(digits)}M`;
  if (a >= 1e4) return `${(n / 1e3).toPrecision(digits)}k`;
  if (a >= 100) return n.toFixed(0);
  return n.toPrecision(digits);
}

// -------------------------------------------------------------------------------- output

/** A plain text table: `header` is an array of column titles, `rows` arrays of cells. */
export function textTable(header, rows, { align } = {}) {
  const all = [header, ...rows].map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const fmt = (r) =>
    r
      .map((c, i) => ((align?.[i] ?? (i === 0 ? 'l' : 'r')) === 'l' ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [fmt(all[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(fmt)].join('\n');
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * A grouped bar chart as SVG text.
 *   groups:  [{ label, sublabel? }]               one cluster per group (e.g. a fio job)
 *   series:  [{ label, color }]                   one bar per series in each group
 *   values:  values[g][s] (number or null)        bar heights
 *   refLines: [{ value, label, color?, dash? }]   horizontal reference lines
 *   yLabel, title, subtitle: text
 */
export function svgBarChart({ title, subtitle, yLabel, groups, series, values, refLines = [], valueFormat = (v) => v.toFixed(2) }) {
  // Text widths are estimated (no font metrics here): 0.6 em per character errs on the wide side.
  const textWidth = (text, size = 11) => text.length * size * 0.6;
  const legendItems = series.map((s) => ({ s, w: 28 + textWidth(s.label) }));
  const W = Math.ceil(
    Math.max(720, 130 + groups.length * (series.length * 22 + 36), textWidth(title, 15) + 40, textWidth(subtitle ?? '') + 40, ...legendItems.map((i) => i.w + 20)),
  );
  // Legend rows as wide as the chart allows, each centred; the picture grows a row at a time.
  const legendRows = [[]];
  for (const item of legendItems) {
    const row = legendRows.at(-1);
    if (row.length && row.reduce((sum, i) => sum + i.w, 0) + item.w > W - 20) legendRows.push([item]);
    else row.push(item);
  }
  const PLOT_H = 460;
  const LEGEND_ROW_H = 18;
  const H = PLOT_H + (legendRows.length - 1) * LEGEND_ROW_H;
  const m = { top: 70, right: 70, bottom: 95, left: 60 };
  const pw = W - m.left - m.right;
  const ph = PLOT_H - m.top - m.bottom;
  const maxV = Math.max(...values.flat().filter((v) => Number.isFinite(v)), ...refLines.map((r) => r.value), 0);
  // A "nice" top of scale and tick step.
  const rawStep = (maxV * 1.12) / 5 || 1;
  const mag = 10 ** Math.floor(Math.log10(rawStep));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= rawStep);
  const top = Math.ceil((maxV * 1.12) / step) * step || 1;
  const y = (v) => m.top + ph - (v / top) * ph;
  const gw = pw / groups.length;
  const bw = Math.min(22, (gw - 16) / series.length);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  if (subtitle) out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);
  for (let t = 0; t <= top + 1e-9; t += step) {
    out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" fill="#444">${esc(+t.toFixed(6))}</text>`);
  }
  if (yLabel) out.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#333">${esc(yLabel)}</text>`);
  groups.forEach((g, gi) => {
    const x0 = m.left + gi * gw + (gw - bw * series.length) / 2;
    series.forEach((s, si) => {
      const v = values[gi][si];
      const x = x0 + si * bw;
      if (!Number.isFinite(v)) {
        out.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${(y(0) - 4).toFixed(1)}" text-anchor="middle" fill="#999">n/a</text>`);
        return;
      }
      out.push(
        `<rect x="${(x + 1).toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(y(0) - y(v)).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.label}, ${g.label}: ${valueFormat(v)}`)}</title></rect>`,
      );
      out.push(
        `<text transform="translate(${(x + bw / 2 + 3).toFixed(1)} ${(y(v) - 3).toFixed(1)}) rotate(-90)" font-size="9" fill="#333">${esc(valueFormat(v))}</text>`,
      );
    });
    out.push(`<text x="${(m.left + gi * gw + gw / 2).toFixed(1)}" y="${PLOT_H - m.bottom + 16}" text-anchor="middle" font-weight="bold">${esc(g.label)}</text>`);
    if (g.sublabel) out.push(`<text x="${(m.left + gi * gw + gw / 2).toFixed(1)}" y="${PLOT_H - m.bottom + 30}" text-anchor="middle" fill="#555" font-size="10">${esc(g.sublabel)}</text>`);
  });
  for (const r of refLines) {
    out.push(
      `<line x1="${m.left}" x2="${W - m.right}" y1="${y(r.value).toFixed(1)}" y2="${y(r.value).toFixed(1)}" stroke="${r.color ?? '#000'}" stroke-dasharray="${r.dash ?? '5 4'}"/>`,
    );
    out.push(`<text x="${W - m.right + 4}" y="${(y(r.value) + 3).toFixed(1)}" fill="${r.color ?? '#000'}" font-size="10">${esc(r.label)}</text>`);
  }
  out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  // Legend under the plot.
  legendRows.forEach((row, r) => {
    let lx = (W - row.reduce((sum, i) => sum + i.w, 0)) / 2;
    const ly = PLOT_H - 30 + r * LEGEND_ROW_H;
    for (const { s, w } of row) {
      out.push(`<rect x="${lx.toFixed(1)}" y="${ly - 9}" width="12" height="12" fill="${s.color}"/>`);
      out.push(`<text x="${(lx + 16).toFixed(1)}" y="${ly + 1}">${esc(s.label)}</text>`);
      lx += w;
    }
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// ----------------------------------------------------------------------------- host facts

/** The file system holding `dir`: { fstype, source, target }. */
export async function fileSystemOf(dir) {
  const r = await run('findmnt', ['-n', '-o', 'FSTYPE,SOURCE,TARGET', '-T', dir], { allowFail: true });
  const [fstype, source, target] = r.stdout.trim().split(/\s+/);
  return { fstype: fstype ?? 'unknown', source: source ?? 'unknown', target: target ?? 'unknown' };
}

/** First line of `cmd args` output, or null. */
export async function versionOf(cmd, args = ['--version']) {
  const r = await run(cmd, args, { allowFail: true }).catch(() => null);
  return r ? (r.stdout || r.stderr).trim().split('\n')[0] : null;
}

export async function hostFacts() {
  const git = await run('git', ['-C', ROOT, 'describe', '--always', '--dirty'], { allowFail: true }).catch(() => null);
  return {
    hostname: os.hostname(),
    kernel: os.release(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadavg: os.loadavg().map((l) => +l.toFixed(2)),
    node: process.version,
    nitrideRev: git?.stdout.trim() || null,
  };
}

/** A timestamp usable in file names: 20250101-123456. */
export function stamp(d = new Date()) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Where a run's results go, without the extension: `--out` (less `.json`), else bench-results/<name>-<stamp>. */
export function resultsBase(out, name, started) {
  const base = out ? path.resolve(out).replace(/\.json$/, '') : path.join(ROOT, 'bench-results', `${name}-${stamp(new Date(started))}`);
  mkdirSync(path.dirname(base), { recursive: true });
  return base;
}

// ------------------------------------------------------------------------ control socket

/** One JSON request to the daemon's control API over its Unix socket. */
export function controlRequest(socketPath, method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { socketPath, method, path: urlPath, headers: { accept: 'application/json', ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) } },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (data += d));
        res.on('end', () => {
          let json;
          try {
            json = data ? JSON.parse(data) : undefined;
          } catch {
            json = data;
          }
          if (res.statusCode >= 400) reject(new Error(`${method} ${urlPath}: ${res.statusCode} ${json?.error?.message ?? data}`));
          else resolve(json);
        });
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${urlPath}: timeout`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * A KMS and a daemon inside network namespace `ns`, VPC underlay on `underlay`:4789, state,
 * sockets and logs under `<scratch>/<name>`; `args`: more daemon options (fleet mode's); `env`:
 * more environment for the daemon.
 * Resolves once the VPC is up, with `api(method, path, body)` on its control socket.
 */
export async function startNitrideHost(scratch, { name, ns, cli, underlay, args = [], env }) {
  const kmsSock = scratch.path(name, 'run-kms', 'kms.sock');
  const ctl = scratch.path(name, 'run', 'control.sock');
  const start = (what, argv, startEnv) => scratch.start(`${name}-${what}`, 'ip', ['netns', 'exec', ns, process.execPath, cli, ...argv], { env: startEnv });
  const kms = start('kms', ['kms', 'serve', '--state-dir', scratch.path(name, 'kms'), '--socket', kmsSock]);
  await waitFor(`KMS ${name}`, () => canConnect(kmsSock), { alive: () => kms.child.exitCode === null });
  const daemon = start('daemon', [
    'daemon', '--state-dir', scratch.path(name, 'state'), '--control-socket', ctl, '--kms-socket', kmsSock,
    '--vpc-listen', `${underlay}:4789`, '--log-level', 'warn', ...args,
  ], env);
  await waitFor(`nitride daemon ${name}`, async () => (await controlRequest(ctl, 'GET', '/v1/status')).vpc?.state === 'up', { timeoutMs: 60_000, alive: () => daemon.child.exitCode === null }).catch((err) => {
    throw new Error(`${err.message}\n${scratch.tail(`${name}-daemon`)}`);
  });
  return { name, ctl, kms, daemon, underlay, api: (method, urlPath, body) => controlRequest(ctl, method, urlPath, body) };
}

// ---------------------------------------------------------------------------- V8 profiles

/**
 * Self time per function of a V8 .cpuprofile: [{ name, where, ms, pct }], sorted, with
 * `(idle)` excluded from the percentages' denominator (reported separately as idleMs).
 */
export function profileSelfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const selfUs = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
  }
  const short = (url) => url.replace(/^file:\/\//, '').replace(ROOT + '/', '');
  const agg = new Map();
  let idleUs = 0;
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)?.callFrame ?? {};
    const name = cf.functionName || '(anonymous)';
    if (name === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    let where = cf.url ? `${short(cf.url)}:${(cf.lineNumber ?? 0) + 1}` : '';
    // Native functions (C++ bindings, the addon) have no URL; V8 may even mislabel addon
    // functions. Name them by their JS caller instead.
    if (!cf.url && !name.startsWith('(')) {
      const caller = byId.get(parentOf.get(id))?.callFrame;
      if (caller?.url) where = `native, from ${caller.functionName || '(anonymous)'} ${short(caller.url)}:${(caller.lineNumber ?? 0) + 1}`;
    }
    const key = `${name} ${where}`;
    const a = agg.get(key) ?? { name, where, us: 0 };
    a.us += us;
    agg.set(key, a);
  }
  const rows = [...agg.values()].sort((a, b) => b.us - a.us).map((a) => ({ name: a.name, where: a.where, ms: +(a.us / 1000).toFixed(1), pct: +((100 * a.us) / (busyUs || 1)).toFixed(1) }));
  return { rows, busyMs: +(busyUs / 1000).toFixed(1), idleMs: +(idleUs / 1000).toFixed(1) };
}

/**
 * A Chrome DevTools Protocol session on a Node inspector WebSocket URL (needs the global
 * WebSocket: Node >= 22, or Node 20 with --experimental-websocket).
 */
export async function inspectorSession(url) {
  if (typeof WebSocket !== 'function') throw new Error('no global WebSocket in this Node (use Node >= 22 or --experimental-websocket)');
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    ws.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)), { once: true });
  });
  let seq = 0;
  const pending = new Map();
  ws.addEventListener('message', (ev) => {
    const msg = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data).toString());
    const p = msg.id !== undefined && pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
    else p.resolve(msg.result);
  });
  ws.addEventListener('close', () => {
    for (const p of pending.values()) p.reject(new Error('inspector connection closed'));
    pending.clear();
  });
  return {
    call(method, params = {}) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, method });
        ws.send(JSON.stringify({ id, method, params }));
      });
    },
    close() {
      ws.close();
    },
  };
}
