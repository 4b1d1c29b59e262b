/**
 * The ephemeral-key handover memfd: its codec, and the seals (real memfds, real fcntl): nobody
 * can change a sealed handover, and the reader refuses anything that is not one.
 */
import { spawn } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readlinkSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_HANDOVER_BYTES, decodeHandover, encodeHandover, readHandover, sealHandover } from '../../src/volume/ephemeral-keys.js';
import { fileSeals } from '../../src/native/addon.js';

const VOL = 'vol-0123456789abcdef0';
const KEY = { keyId: 'key-0123456789abcdef0123456789abcdef', keyVersion: 3, wrappedKey: Buffer.alloc(180, 7).toString('base64') };

describe('handover codec', () => {
  it('round-trips a wrapped key and names its volume', () => {
    const bytes = encodeHandover(VOL, KEY);
    expect(bytes.length).toBeLessThan(MAX_HANDOVER_BYTES);
    expect(decodeHandover(VOL, bytes)).toEqual(KEY);
  });

  it('refuses another volume, another format, bad JSON, bad fields and oversize input', () => {
    const bytes = encodeHandover(VOL, KEY);
    expect(() => decodeHandover('vol-00000000000000000', bytes)).toThrow(`names volume ${VOL}`);
    expect(() => decodeHandover(VOL, Buffer.from('{"volume":"x"}'))).toThrow('not a nitride ephemeral key handover');
    expect(() => decodeHandover(VOL, bytes.subarray(0, bytes.length - 2))).toThrow('malformed handover');
    const bad = Buffer.from(bytes.toString().replace('"keyVersion":3', '"keyVersion":"3"'));
    expect(() => decodeHandover(VOL, bad)).toThrow('malformed handover');
    expect(() => decodeHandover(VOL, Buffer.concat([bytes, Buffer.alloc(MAX_HANDOVER_BYTES)]))).toThrow(/at most 4096/);
    expect(() => encodeHandover(VOL, { ...KEY, wrappedKey: 'A'.repeat(MAX_HANDOVER_BYTES) })).toThrow(/at most 4096/);
  });
});

describe('sealed memfd', () => {
  it('is a memfd named after the volume, fully sealed: writes, truncation and growth fail; it reads back', () => {
    const fd = sealHandover(VOL, KEY);
    try {
      expect(readlinkSync(`/proc/self/fd/${fd}`)).toBe(`/memfd:eph-${VOL} (deleted)`);
      expect(fileSeals(fd)).toEqual({ write: true, shrink: true, grow: true, seal: true });
      expect(() => writeSync(fd, Buffer.from('x'), 0, 1, 0)).toThrow(/EPERM|EBADF/);
      expect(() => ftruncateSync(fd, 1)).toThrow(/EPERM/);
      expect(() => ftruncateSync(fd, 1 << 20)).toThrow(/EPERM/);
      // Reopened read-write through /proc: the seals belong to the file, not to the descriptor.
      const rw = openSync(`/proc/self/fd/${fd}`, 'r+');
      try {
        expect(() => writeSync(rw, Buffer.from('x'), 0, 1, 0)).toThrow(/EPERM/);
      } finally {
        closeSync(rw);
      }
      expect(readHandover(VOL, fd)).toEqual(KEY);
      expect(() => readHandover('vol-00000000000000000', fd)).toThrow(`names volume ${VOL}`);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses a plain file and an unsealed memfd holding a valid handover', async () => {
    const file = path.join(tmpdir(), `nitride-eph-${process.pid}`);
    writeFileSync(file, encodeHandover(VOL, KEY));
    const fd = openSync(file, 'r');
    try {
      expect(() => readHandover(VOL, fd)).toThrow('not a sealable memory file');
    } finally {
      closeSync(fd);
      rmSync(file, { force: true });
    }
    // An unsealed memfd made by another process, opened through /proc.
    const py = spawn('python3', ['-c', 'import os,sys,time\nfd=os.memfd_create("eph",os.MFD_ALLOW_SEALING)\nos.write(fd,sys.stdin.buffer.read())\nprint(fd,flush=True)\ntime.sleep(60)'], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      py.stdin.end(encodeHandover(VOL, KEY));
      const theirs = await new Promise<number>((resolve) => py.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
      const unsealed = openSync(`/proc/${py.pid}/fd/${theirs}`, 'r');
      try {
        expect(fileSeals(unsealed)).toEqual({ write: false, shrink: false, grow: false, seal: false });
        expect(() => readHandover(VOL, unsealed)).toThrow('not sealed');
      } finally {
        closeSync(unsealed);
      }
    } finally {
      py.kill('SIGKILL');
    }
  });
});
