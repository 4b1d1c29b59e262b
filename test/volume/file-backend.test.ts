import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { blockIo } from '../../src/volume/block-io.js';
import { FileBackend } from '../../src/volume/file-backend.js';
import { O_DSYNC, fdFlags, rejectsWithCode, scratchDir, scratchRoots } from './helpers.js';

for (const { name, root } of scratchRoots()) {
  describe(`FileBackend on ${name}`, () => {
    let dir: string;
    let cleanup: () => void;
    let n = 0;
    const file = (): string => path.join(dir, `vol-${n++}.img`);

    beforeAll(() => ({ dir, cleanup } = scratchDir(root)));
    afterAll(() => cleanup());
    afterEach(() => vi.restoreAllMocks());

    it('creates a sparse file of the size, reading zeroes, reported as one hole', async () => {
      const p = file();
      const b = await FileBackend.create(p, 8 << 20);
      expect(b.size).toBe(8 << 20);
      expect(statSync(p).size).toBe(8 << 20);
      expect(statSync(p).blocks).toBe(0);
      expect(statSync(p).mode & 0o777).toBe(0o600);
      const buf = Buffer.alloc(65536, 1);
      await b.read(1 << 20, buf);
      expect(buf.every((x) => x === 0)).toBe(true);
      expect(await b.extents(0, 8 << 20)).toEqual([{ length: 8 << 20, hole: true, zero: true }]);
      await b.close();
      await rejectsWithCode(FileBackend.create(p, 4096), 'EEXIST');
    });

    it('writes, reads back, and maps data and holes through SEEK_DATA/SEEK_HOLE', async () => {
      const b = await FileBackend.create(file(), 1 << 20);
      const data = randomBytes(8192);
      await b.write(65536, data);
      const back = Buffer.alloc(8192);
      await b.read(65536, back);
      expect(back.equals(data)).toBe(true);
      expect(await b.extents(0, 1 << 20)).toEqual([
        { length: 65536, hole: true, zero: true },
        { length: 8192, hole: false, zero: false },
        { length: (1 << 20) - 65536 - 8192, hole: true, zero: true },
      ]);
      // Clipped to the request.
      expect(await b.extents(65536 + 4096, 8192)).toEqual([
        { length: 4096, hole: false, zero: false },
        { length: 4096, hole: true, zero: true },
      ]);
      await b.close();
    });

    it('trim punches holes; zero punches, or allocates with noHole; both read back zeroes', async () => {
      const p = file();
      const b = await FileBackend.create(p, 1 << 20);
      await b.write(0, Buffer.alloc(1 << 20, 0x5a));
      await b.trim(0, 65536);
      await b.zero(65536, 65536);
      await b.zero(131072, 65536, { noHole: true });
      await b.trim(196608 + 512, 512); // sub-block: zeroes, keeps the block
      const buf = Buffer.alloc(262144);
      await b.read(0, buf);
      expect(buf.subarray(0, 196608).every((x) => x === 0)).toBe(true);
      expect(buf.subarray(196608, 196608 + 512).every((x) => x === 0x5a)).toBe(true);
      expect(buf.subarray(196608 + 512, 196608 + 1024).every((x) => x === 0)).toBe(true);
      expect(buf.subarray(196608 + 1024).every((x) => x === 0x5a)).toBe(true);
      const ext = await b.extents(0, 131072);
      expect(ext).toEqual([{ length: 131072, hole: true, zero: true }]);
      await b.close();
    });

    it('fastZero works where holes can be punched', async () => {
      const b = await FileBackend.create(file(), 1 << 20);
      await b.write(0, Buffer.alloc(4096, 1));
      await b.zero(0, 4096, { fastZero: true });
      const buf = Buffer.alloc(4096, 1);
      await b.read(0, buf);
      expect(buf.every((x) => x === 0)).toBe(true);
      await b.close();
    });

    it('cache() asks the kernel for readahead of the range', async () => {
      const b = await FileBackend.create(file(), 1 << 20);
      const advise = vi.spyOn(blockIo, 'adviseWillNeed');
      await b.cache(65536, 131072);
      expect(advise).toHaveBeenCalledWith(expect.any(Number), 65536, 131072);
      await rejectsWithCode(b.cache(1 << 20, 512), 'EINVAL');
      await b.close();
    });

    it('falls back to writing zeroes when fallocate is unsupported, and fastZero then fails ENOTSUP', async () => {
      const b = await FileBackend.create(file(), 1 << 20);
      await b.write(0, Buffer.alloc(65536, 1));
      const unsupported = (): Promise<void> => Promise.reject(Object.assign(new Error('nope'), { code: 'EOPNOTSUPP' }));
      vi.spyOn(blockIo, 'punchHole').mockImplementation(unsupported);
      vi.spyOn(blockIo, 'zeroRange').mockImplementation(unsupported);
      await b.trim(0, 8192);
      await rejectsWithCode(b.zero(8192, 8192, { fastZero: true }), 'ENOTSUP');
      await b.zero(8192, 8192);
      const buf = Buffer.alloc(65536);
      await b.read(0, buf);
      expect(buf.subarray(0, 16384).every((x) => x === 0)).toBe(true);
      expect(buf.subarray(16384).every((x) => x === 1)).toBe(true);
      await b.close();
    });

    it("FUA with fua: 'fdatasync' calls fdatasync after the write; plain writes do not; flush does", async () => {
      const b = await FileBackend.create(file(), 1 << 20, { fua: 'fdatasync' });
      const calls: string[] = [];
      vi.spyOn(blockIo, 'pwrite').mockImplementation(async (fd) => void calls.push(`pwrite ${fd}`));
      vi.spyOn(blockIo, 'fdatasync').mockImplementation(async (fd) => void calls.push(`fdatasync ${fd}`));
      await b.write(0, Buffer.alloc(4096));
      expect(calls).toHaveLength(1);
      await b.write(4096, Buffer.alloc(4096), { fua: true });
      expect(calls.slice(1)).toEqual([calls[0], calls[0]!.replace('pwrite', 'fdatasync')]);
      calls.length = 0;
      await b.flush();
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatch(/^fdatasync /);
      calls.length = 0;
      await b.trim(0, 4096, { fua: true });
      await b.zero(0, 4096, { fua: true });
      expect(calls.filter((c) => c.startsWith('fdatasync'))).toHaveLength(2);
      vi.restoreAllMocks();
      await b.close();
    });

    it("FUA with fua: 'dsync' (default) writes through an O_DSYNC descriptor of the same file", async () => {
      const p = file();
      const b = await FileBackend.create(p, 1 << 20);
      expect(b.fuaMode).toBe('dsync');
      const fds: number[] = [];
      const real = blockIo.pwrite;
      vi.spyOn(blockIo, 'pwrite').mockImplementation((fd, data, pos) => {
        fds.push(fd);
        return real(fd, data, pos);
      });
      const fsync = vi.spyOn(blockIo, 'fdatasync');
      await b.write(0, Buffer.alloc(4096, 1));
      await b.write(4096, Buffer.alloc(4096, 2), { fua: true });
      expect(fds).toHaveLength(2);
      expect(fdFlags(fds[0]!) & O_DSYNC).toBe(0);
      expect(fdFlags(fds[1]!) & O_DSYNC).toBe(O_DSYNC);
      expect(fsync).not.toHaveBeenCalled();
      // Both descriptors are the same file.
      const disk = readFileSync(p);
      expect(disk.subarray(0, 4096).every((x) => x === 1) && disk.subarray(4096, 8192).every((x) => x === 2)).toBe(true);
      await b.flush();
      expect(fsync).toHaveBeenCalledTimes(1);
      await b.close();
    });

    it('tries small reads inline from the page cache, falls back on a miss, and remembers no support', async () => {
      const b = await FileBackend.create(file(), 1 << 20);
      const data = randomBytes(65536);
      await b.write(0, data);
      const inline = vi.spyOn(blockIo, 'tryPread');
      const pread = vi.spyOn(blockIo, 'pread');
      const buf = Buffer.alloc(4096);
      await b.read(4096, buf);
      expect(buf.equals(data.subarray(4096, 8192))).toBe(true);
      const rc = inline.mock.results[0]!.value as number;
      expect(rc).toBe(name === 'tmpfs' ? -1 : 1);
      expect(pread).toHaveBeenCalledTimes(rc === 1 ? 0 : 1);
      if (rc === 1) {
        inline.mockReturnValueOnce(0);
        await b.read(8192, buf);
        expect(buf.equals(data.subarray(8192, 12288))).toBe(true);
        expect(pread).toHaveBeenCalledTimes(1);
      }
      inline.mockClear();
      await b.read(0, buf);
      expect(inline).toHaveBeenCalledTimes(rc === -1 ? 0 : 1);
      await b.close();
    });

    it('close() waits for running requests, flushes, and later requests fail ESHUTDOWN', async () => {
      const b = await FileBackend.create(file(), 1 << 20);
      const fsync = vi.spyOn(blockIo, 'fdatasync');
      const data = randomBytes(65536);
      const w = b.write(0, data);
      const closing = b.close();
      await w;
      await closing;
      expect(fsync).toHaveBeenCalled();
      await rejectsWithCode(b.read(0, Buffer.alloc(512)), 'ESHUTDOWN');
      await rejectsWithCode(b.flush(), 'ESHUTDOWN');
      await expect(b.useFd(async () => 1)).rejects.toMatchObject({ code: 'ESHUTDOWN' });
      await b.close(); // idempotent
    });

    it('refuses out-of-range, misaligned and read-only requests with codes', async () => {
      const p = file();
      const b = await FileBackend.create(p, 1 << 20);
      await rejectsWithCode(b.write(1 << 20, Buffer.alloc(512)), 'ENOSPC');
      await rejectsWithCode(b.write((1 << 20) - 512, Buffer.alloc(1024)), 'ENOSPC');
      await rejectsWithCode(b.zero((1 << 20) - 512, 1024), 'ENOSPC');
      await rejectsWithCode(b.read((1 << 20) - 512, Buffer.alloc(1024)), 'EINVAL');
      await rejectsWithCode(b.trim(1 << 20, 512), 'EINVAL');
      await rejectsWithCode(b.read(256, Buffer.alloc(512)), 'EINVAL');
      await rejectsWithCode(b.write(0, Buffer.alloc(100)), 'EINVAL');
      await rejectsWithCode(b.extents(-512, 512), 'EINVAL');
      await b.close();
      const ro = await FileBackend.open(p, { readOnly: true });
      expect(ro.capabilities.readOnly).toBe(true);
      await rejectsWithCode(ro.write(0, Buffer.alloc(512)), 'EROFS');
      await rejectsWithCode(ro.trim(0, 512), 'EROFS');
      await ro.read(0, Buffer.alloc(512));
      await ro.close();
      const odd = file();
      writeFileSync(odd, Buffer.alloc(1000));
      await rejectsWithCode(FileBackend.open(odd), 'EINVAL');
      await rejectsWithCode(FileBackend.open(path.join(dir, 'missing.img')), 'ENOENT');
    });

    it('opens an existing file with its size, grows with resize(), refuses to shrink', async () => {
      const p = file();
      const a = await FileBackend.create(p, 65536);
      await a.write(0, Buffer.alloc(512, 9));
      await a.close();
      const b = await FileBackend.open(p);
      expect(b.size).toBe(65536);
      await b.resize(1 << 20);
      expect(b.size).toBe(1 << 20);
      expect(statSync(p).size).toBe(1 << 20);
      const buf = Buffer.alloc(512);
      await b.read((1 << 20) - 512, buf);
      expect(buf.every((x) => x === 0)).toBe(true);
      await b.read(0, buf);
      expect(buf.every((x) => x === 9)).toBe(true);
      await rejectsWithCode(b.resize(65536), 'EINVAL');
      await b.close();
    });

    it('reads past a backing file truncated behind its back as zeroes', async () => {
      const p = file();
      const b = await FileBackend.create(p, 65536);
      await b.write(0, Buffer.alloc(65536, 4));
      truncateSync(p, 4096);
      const buf = Buffer.alloc(8192, 1);
      await b.read(0, buf);
      expect(buf.subarray(0, 4096).every((x) => x === 4)).toBe(true);
      expect(buf.subarray(4096).every((x) => x === 0)).toBe(true);
      expect((await b.extents(0, 65536)).at(-1)).toMatchObject({ hole: true, zero: true });
      await b.close();
    });
  });
}
