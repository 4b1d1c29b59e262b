/**
 * Every system call the volume layers make on a backing file, gathered in one mutable object so
 * that tests can observe them (`vi.spyOn(blockIo, 'fdatasync')`) without timing. Production code
 * calls them only through this object.
 *
 * pread/pwrite/fdatasync are node's fs callback API (one libuv threadpool job each, no FileHandle
 * bookkeeping); fallocate, lseek, the page-cache-only synchronous reads (preadv2 RWF_NOWAIT) and
 * the combined crypto+I/O jobs are the addon's (blockio.cc).
 */
import { fdatasync as fsFdatasync, read as fsRead, write as fsWrite } from 'node:fs';
import { adviseWillNeed, encryptPwrite, encryptPwriteSync, preadDecrypt, punchHole, seekData, seekHole, tryPread, tryPreadDecrypt, zeroRange } from '../native/addon.js';

/** pread until `buf` is full; bytes past the end of the file read as zeroes. */
function pread(fd: number, buf: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err) return reject(err);
      if (n === 0) {
        buf.fill(0, done);
        return resolve();
      }
      done += n;
      if (done >= buf.length) return resolve();
      fsRead(fd, buf, done, buf.length - done, position + done, step);
    };
    if (buf.length === 0) return resolve();
    fsRead(fd, buf, 0, buf.length, position, step);
  });
}

/** pwrite all of `data`. */
function pwrite(fd: number, data: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err) return reject(err);
      if (n === 0) return reject(Object.assign(new Error(`pwrite fd ${fd} at ${position + done} wrote nothing`), { code: 'EIO' }));
      done += n;
      if (done >= data.length) return resolve();
      fsWrite(fd, data, done, data.length - done, position + done, step);
    };
    if (data.length === 0) return resolve();
    fsWrite(fd, data, 0, data.length, position, step);
  });
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsFdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export const blockIo = {
  pread,
  pwrite,
  fdatasync,
  punchHole,
  zeroRange,
  adviseWillNeed,
  seekData,
  seekHole,
  preadDecrypt,
  encryptPwrite,
  encryptPwriteSync,
  tryPread,
  tryPreadDecrypt,
};
