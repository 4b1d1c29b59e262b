/**
 * The addon's block I/O (native/src/blockio.cc): fallocate, SEEK_DATA/SEEK_HOLE, and the combined
 * pread+decrypt / encrypt+pwrite threadpool jobs, checked against node:crypto as the reference.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  XtsCipher,
  encryptPwrite,
  preadDecrypt,
  punchHole,
  seekData,
  seekHole,
  tryPread,
  tryPreadDecrypt,
  zeroRange,
} from '../../src/native/addon.js';
import { randomKey, referenceEncrypt, rejectsWithCode, scratchDir, scratchRoots } from './helpers.js';

function readRaw(fd: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  readSync(fd, b, 0, length, offset);
  return b;
}

for (const { name, root } of scratchRoots()) {
  describe(`blockio on ${name}`, () => {
    let dir: string;
    let cleanup: () => void;
    let fd: number;
    const SIZE = 1 << 20;

    beforeAll(() => {
      ({ dir, cleanup } = scratchDir(root));
      fd = openSync(path.join(dir, 'vol.img'), 'w+');
      ftruncateSync(fd, SIZE);
    });
    afterAll(() => {
      closeSync(fd);
      cleanup();
    });

    it('seekData/seekHole follow holes and return -1 at ENXIO', async () => {
      await punchHole(fd, 0, SIZE);
      expect(seekData(fd, 0)).toBe(-1);
      expect(seekHole(fd, 0)).toBe(0);
      expect(seekHole(fd, SIZE)).toBe(-1);
      writeSync(fd, Buffer.alloc(8192, 1), 0, 8192, 65536);
      expect(seekData(fd, 0)).toBe(65536);
      expect(seekHole(fd, 65536)).toBe(65536 + 8192);
      expect(seekData(fd, 65536 + 8192)).toBe(-1);
    });

    it('punchHole deallocates and zeroes, keeping the size', async () => {
      writeSync(fd, Buffer.alloc(16384, 0xab), 0, 16384, 0);
      await punchHole(fd, 4096, 8192);
      const b = readRaw(fd, 0, 16384);
      expect(b.subarray(0, 4096).every((x) => x === 0xab)).toBe(true);
      expect(b.subarray(4096, 12288).every((x) => x === 0)).toBe(true);
      expect(b.subarray(12288).every((x) => x === 0xab)).toBe(true);
      expect(seekHole(fd, 0)).toBe(4096);
      await punchHole(fd, 0, 0); // zero length: no system call, no EINVAL
    });

    it('zeroRange zeroes (or rejects with ENOTSUP where the file system lacks it)', async () => {
      writeSync(fd, Buffer.alloc(8192, 0xcd), 0, 8192, 0);
      try {
        await zeroRange(fd, 0, 4096);
      } catch (err) {
        expect((err as { code?: string }).code).toBe('ENOTSUP');
        return;
      }
      const b = readRaw(fd, 0, 8192);
      expect(b.subarray(0, 4096).every((x) => x === 0)).toBe(true);
      expect(b.subarray(4096).every((x) => x === 0xcd)).toBe(true);
    });

    for (const unit of [512, 4096]) {
      it(`encryptPwrite writes XTS ciphertext (unit ${unit}) and leaves the plaintext alone`, async () => {
        const key = randomKey();
        const cipher = new XtsCipher(key, unit);
        const data = randomBytes(3 * 4096);
        const copy = Buffer.from(data);
        const offset = 5 * 4096;
        await encryptPwrite(fd, cipher, offset, data);
        expect(data.equals(copy)).toBe(true);
        expect(readRaw(fd, offset, data.length).equals(referenceEncrypt(key, unit, offset / unit, copy))).toBe(true);
        const back = Buffer.alloc(data.length, 0x55);
        await preadDecrypt(fd, cipher, offset, back);
        expect(back.equals(copy)).toBe(true);
        cipher.destroy();
      });
    }

    it('encryptPwrite handles writes larger than its 1 MiB step', async () => {
      const key = randomKey();
      const cipher = new XtsCipher(key, 4096);
      const big = openSync(path.join(dir, 'big.img'), 'w+');
      try {
        const data = randomBytes((3 << 20) + 4096);
        await encryptPwrite(big, cipher, 8192, data);
        expect(readRaw(big, 8192, data.length).equals(referenceEncrypt(key, 4096, 2, data))).toBe(true);
        const back = Buffer.alloc(data.length);
        await preadDecrypt(big, cipher, 8192, back);
        expect(back.equals(data)).toBe(true);
      } finally {
        closeSync(big);
        cipher.destroy();
      }
    });

    it('encryptPwrite over ranges partly in the page cache (one pwrite where cached, pieces elsewhere) writes every byte', async () => {
      const key = randomKey();
      const cipher = new XtsCipher(key, 4096);
      const file = path.join(dir, 'mixed.img');
      const f = openSync(file, 'w+');
      try {
        const want = randomBytes(4 << 20);
        await encryptPwrite(f, cipher, 0, want);
        // Drop [1 MiB, 2 MiB + 12 KiB) from the page cache (written back first), so the writes
        // below span cached pages, evicted ones and the edges between, at offsets off the 64 KiB pieces.
        execFileSync('python3', ['-c', `import os; fd = os.open(${JSON.stringify(file)}, os.O_RDONLY); os.fdatasync(fd); os.posix_fadvise(fd, 1 << 20, (1 << 20) + 12288, os.POSIX_FADV_DONTNEED)`]);
        for (const [off, len] of [[61440, (2 << 20) + 12288], [3 << 20, 1 << 20], [(2 << 20) + 4096, 4096], [(1 << 20) - 8192, 200 * 1024]] as const) {
          const data = randomBytes(len);
          data.copy(want, off);
          await encryptPwrite(f, cipher, off, data);
        }
        expect(readRaw(f, 0, want.length).equals(referenceEncrypt(key, 4096, 0, want))).toBe(true);
      } finally {
        closeSync(f);
        cipher.destroy();
      }
    });

    it('preadDecrypt reads all-zero units, and bytes past the end of the file, as zeroes', async () => {
      const cipher = new XtsCipher(randomKey(), 4096);
      await punchHole(fd, 0, SIZE);
      const data = randomBytes(4096);
      await encryptPwrite(fd, cipher, 4096, data);
      const buf = Buffer.alloc(3 * 4096, 0x77);
      await preadDecrypt(fd, cipher, 0, buf);
      expect(buf.subarray(0, 4096).every((x) => x === 0)).toBe(true);
      expect(buf.subarray(4096, 8192).equals(data)).toBe(true);
      expect(buf.subarray(8192).every((x) => x === 0)).toBe(true);
      const past = Buffer.alloc(8192, 0x77);
      await preadDecrypt(fd, cipher, SIZE - 4096, past);
      expect(past.every((x) => x === 0)).toBe(true);
      cipher.destroy();
    });

    it('tryPreadDecrypt/tryPread read cached data synchronously, or say why not', async () => {
      const cipher = new XtsCipher(randomKey(), 4096);
      const data = randomBytes(8192);
      await punchHole(fd, 0, SIZE);
      await encryptPwrite(fd, cipher, 8192, data);
      const buf = Buffer.alloc(3 * 4096, 0x33);
      const rc = tryPreadDecrypt(fd, cipher, 4096, buf);
      if (name === 'tmpfs') {
        expect(rc).toBe(-1); // no RWF_NOWAIT on tmpfs
      } else {
        expect(rc).toBe(1);
        expect(buf.subarray(0, 4096).every((x) => x === 0)).toBe(true); // a hole: zeroes
        expect(buf.subarray(4096).equals(data)).toBe(true);
        const raw = Buffer.alloc(8192);
        expect(tryPread(fd, 8192, raw)).toBe(1);
        expect(raw.equals(readRaw(fd, 8192, 8192))).toBe(true);
        expect(tryPread(fd, SIZE - 4096, Buffer.alloc(8192))).toBe(0); // short at the end of the file
      }
      expect(tryPread(fd, 0, Buffer.alloc(0))).toBe(1);
      expect(() => tryPreadDecrypt(fd, cipher, 100, buf)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => tryPread(1 << 30, 0, buf)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'preadv2' }));
      cipher.destroy();
    });

    it('sync: true completes (fdatasync after the write)', async () => {
      const cipher = new XtsCipher(randomKey(), 4096);
      await encryptPwrite(fd, cipher, 0, randomBytes(4096), { sync: true });
      cipher.destroy();
    });

    it('one cipher serves many concurrent threadpool jobs and the main thread correctly', async () => {
      const key = randomKey();
      const cipher = new XtsCipher(key, 4096);
      const units = 64;
      const plain = randomBytes(units * 4096);
      const writes: Promise<void>[] = [];
      for (let i = 0; i < units; i++) {
        writes.push(encryptPwrite(fd, cipher, i * 4096, plain.subarray(i * 4096, (i + 1) * 4096)));
        // Main-thread use of the same cipher in between.
        const probe = Buffer.from(plain.subarray(0, 4096));
        cipher.encrypt(i, probe);
        cipher.decrypt(i, probe);
        expect(probe.equals(plain.subarray(0, 4096))).toBe(true);
      }
      await Promise.all(writes);
      expect(readRaw(fd, 0, plain.length).equals(referenceEncrypt(key, 4096, 0, plain))).toBe(true);
      const reads = Array.from({ length: units }, (_, i) => {
        const b = Buffer.alloc(4096);
        return preadDecrypt(fd, cipher, i * 4096, b).then(() => b);
      });
      const back = Buffer.concat(await Promise.all(reads));
      expect(back.equals(plain)).toBe(true);
      cipher.destroy();
    });

    it('destroy() with jobs in flight lets them finish; later calls throw ERR_NITRIDE_XTS_DESTROYED', async () => {
      const cipher = new XtsCipher(randomKey(), 4096);
      const data = randomBytes(4096);
      const jobs = Array.from({ length: 16 }, (_, i) => encryptPwrite(fd, cipher, i * 4096, data));
      cipher.destroy();
      await Promise.all(jobs);
      expect(() => preadDecrypt(fd, cipher, 0, Buffer.alloc(4096))).toThrow(
        expect.objectContaining({ code: 'ERR_NITRIDE_XTS_DESTROYED' }),
      );
    });

    it('validates arguments synchronously and rejects system errors with errno codes', async () => {
      const cipher = new XtsCipher(randomKey(), 4096);
      expect(() => preadDecrypt(fd, cipher, 512, Buffer.alloc(4096))).toThrow(
        expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }),
      );
      expect(() => encryptPwrite(fd, cipher, 0, Buffer.alloc(1000))).toThrow(
        expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }),
      );
      expect(() => preadDecrypt(fd, {} as XtsCipher, 0, Buffer.alloc(4096))).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
      );
      expect(() => encryptPwrite(fd, cipher, -4096, Buffer.alloc(4096))).toThrow(
        expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }),
      );
      expect(() => punchHole(fd, 0.5, 1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      const rdonly = openSync(path.join(dir, 'vol.img'), 'r');
      try {
        const e = await rejectsWithCode(encryptPwrite(rdonly, cipher, 0, Buffer.alloc(4096)), 'EBADF');
        expect(e).toMatchObject({ syscall: 'pwrite' });
      } finally {
        closeSync(rdonly);
      }
      await rejectsWithCode(preadDecrypt(1 << 30, cipher, 0, Buffer.alloc(4096)), 'EBADF');
      cipher.destroy();
    });
  });
}
