/** A service's state directory (the daemon's, the KMS's) and its one-process-per-directory lock. */
import { constants as fsc, promises as fs } from 'node:fs';
import path from 'node:path';
import { RuntimeError, errnoCode, oneLine } from './errors.js';
import { ensureDir } from './durable-fs.js';

/** The services that own a state directory; each locks it with `<service>.pid`. */
export type Service = 'daemon' | 'kms';

/** Whether a process with this PID exists (signal 0 probes without signalling). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

/**
 * A state directory owned by one running process of a service. `open` creates it (0700) if
 * needed, proves it writable, and takes the PID lock; `release` drops the lock.
 */
export class StateDir {
  private constructor(
    readonly root: string,
    private readonly lockFile: string,
  ) {}

  static async open(root: string, service: Service): Promise<StateDir> {
    const dir = path.resolve(root);
    try {
      await ensureDir(dir);
      await fs.access(dir, fsc.W_OK | fsc.X_OK);
      const st = await fs.stat(dir);
      if (!st.isDirectory()) throw new RuntimeError(`state directory ${dir} is not a directory`, 'STATE_DIR');
    } catch (err) {
      if (err instanceof RuntimeError) throw err;
      throw new RuntimeError(`state directory ${dir} is not usable: ${oneLine(err)}`, 'STATE_DIR', { cause: err });
    }
    const lockFile = path.join(dir, `${service}.pid`);
    await takePidLock(lockFile, service);
    return new StateDir(dir, lockFile);
  }

  /** Absolute path of a file inside the state directory. */
  file(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  async release(): Promise<void> {
    const text = await fs.readFile(this.lockFile, 'utf8').catch(() => '');
    if (Number(text.trim()) === process.pid) await fs.rm(this.lockFile, { force: true });
  }
}

/** Create `lockFile` holding our PID; a live holder makes this fail, a stale one is replaced. */
async function takePidLock(lockFile: string, service: Service): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await fs.open(lockFile, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      try {
        await handle.writeFile(`${process.pid}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') {
        throw new RuntimeError(`cannot create ${lockFile}: ${oneLine(err)}`, 'STATE_DIR', { cause: err });
      }
    }
    const holder = Number((await fs.readFile(lockFile, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
      throw new RuntimeError(`another nitride ${service} (pid ${holder}) is using state directory ${path.dirname(lockFile)}`, 'ALREADY_RUNNING');
    }
    await fs.rm(lockFile, { force: true });
  }
  throw new RuntimeError(`cannot take the lock ${lockFile}`, 'STATE_DIR');
}
