/**
 * The boot image allowlist: the Nitro controller's firmware check, in software. `allow`
 * records a file's SHA-256 and keeps a private, content-addressed copy of it
 * (<state>/images/<sha256>, mode 0400); `vm run` hashes the kernel/initrd it is given and boots
 * only the stored copy of an allowed hash. QEMU therefore never reads a file that could have
 * changed between the check and the boot, and the copy is re-hashed before every use, so a
 * tampered state directory is refused too.
 *
 * The list itself is <state>/images.json (atomic durable writes).
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { ConflictError, NotFoundError, RuntimeError, UsageError, errnoCode, oneLine } from '../common/errors.js';
import { ensureDir, readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import type { ImageInfo } from '../api/vms.js';

/** Boot images above this size are refused (kernels and initramfs are tens of MB). */
const MAX_IMAGE_BYTES = 1 << 30;


interface ImagesFile {
  format: 1;
  images: ImageInfo[];
}

export class BootImageRefusedError extends UsageError {
  constructor(message: string) {
    super(message, 'IMAGE_NOT_ALLOWED');
  }
}

/** SHA-256 of a file, streamed; a clear error if it cannot be read or is not a regular file. */
export async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${errnoCode(err) === 'ENOENT' ? 'no such file' : oneLine(err)}`);
  }
  if (!st.isFile()) throw new UsageError(`${file} is not a regular file`);
  if (st.size > MAX_IMAGE_BYTES) throw new UsageError(`${file} is ${st.size} bytes; boot images are limited to 1 GiB`);
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of createReadStream(file)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${oneLine(err)}`);
  }
  return { sha256: hash.digest('hex'), size };
}

export class ImageAllowlist {
  private images: ImageInfo[] = [];

  constructor(
    private readonly listFile: string,
    private readonly storeDir: string,
  ) {}

  async load(): Promise<void> {
    await ensureDir(this.storeDir);
    const file = await readJsonFile<ImagesFile>(this.listFile);
    this.images = file?.images ?? [];
  }

  list(): ImageInfo[] {
    return this.images.map((i) => ({ ...i }));
  }

  /** Record FILE's hash and keep a private copy of it. Allowing the same content twice is a no-op. */
  async allow(source: string, name?: string): Promise<ImageInfo> {
    const { sha256, size } = await sha256File(source);
    const existing = this.images.find((i) => i.sha256 === sha256);
    if (existing) return { ...existing };
    const label = name ?? path.basename(source);
    if (this.images.some((i) => i.name === label)) throw new ConflictError(`an image named '${label}' is allowed already (with other content); give --name`, 'IMAGE_NAME_TAKEN');
    // Copy, then hash the copy: what is stored is exactly what was checked.
    const stored = this.storePath(sha256);
    const tmp = `${stored}.tmp`;
    await fs.copyFile(source, tmp);
    const copied = await sha256File(tmp);
    if (copied.sha256 !== sha256) {
      await fs.rm(tmp, { force: true });
      throw new ConflictError(`${source} changed while it was being allowed; try again`, 'IMAGE_CHANGED');
    }
    await fs.chmod(tmp, 0o400);
    const handle = await fs.open(tmp, 'r');
    await handle.sync().finally(() => handle.close());
    await fs.rename(tmp, stored);
    const info: ImageInfo = { sha256, name: label, size, source: path.resolve(source), addedAt: new Date().toISOString() };
    await this.save([...this.images, info]);
    return { ...info };
  }

  /** Remove by hash (or a unique prefix of at least 8 hex digits) or by name. */
  async remove(ref: string): Promise<ImageInfo> {
    const image = this.find(ref);
    await this.save(this.images.filter((i) => i !== image));
    await fs.rm(this.storePath(image.sha256), { force: true });
    return { ...image };
  }

  /**
   * The stored copy to boot for FILE, if FILE's content is allowed; throws
   * BootImageRefusedError (naming the hash) otherwise.
   */
  async resolve(file: string, role: string): Promise<{ path: string; image: ImageInfo }> {
    const { sha256 } = await sha256File(file);
    const image = this.images.find((i) => i.sha256 === sha256);
    if (!image) throw new BootImageRefusedError(`${role} ${file} (sha256 ${sha256}) is not on the boot image allowlist; run: nitride image allow ${file}`);
    return this.storedCopy(image);
  }

  /** The stored copy of an allowed hash (`vm start`: the images a VM ran with, if still allowed). */
  async resolveHash(sha256: string, role: string): Promise<{ path: string; image: ImageInfo }> {
    const image = this.images.find((i) => i.sha256 === sha256);
    if (!image) throw new BootImageRefusedError(`the ${role} this VM ran with (sha256 ${sha256}) is no longer on the boot image allowlist; allow it again or vm run a new VM`);
    return this.storedCopy(image);
  }

  private async storedCopy(image: ImageInfo): Promise<{ path: string; image: ImageInfo }> {
    const sha256 = image.sha256;
    const stored = this.storePath(sha256);
    const check = await sha256File(stored).catch(() => undefined);
    if (check?.sha256 !== sha256) throw new RuntimeError(`the stored copy of allowed image ${image.name} (${sha256}) is missing or altered; allow it again`, 'IMAGE_STORE_CORRUPT');
    return { path: stored, image: { ...image } };
  }

  private find(ref: string): ImageInfo {
    const byName = this.images.filter((i) => i.name === ref);
    const byHash = /^[0-9a-f]{8,64}$/.test(ref) ? this.images.filter((i) => i.sha256.startsWith(ref)) : [];
    const matches = [...new Set([...byName, ...byHash])];
    if (matches.length === 0) throw new NotFoundError(`no allowed image ${ref}`, 'NO_SUCH_IMAGE');
    if (matches.length > 1) throw new UsageError(`${ref} matches ${matches.length} images; give more of the hash`);
    return matches[0]!;
  }

  private storePath(sha256: string): string {
    return path.join(this.storeDir, sha256);
  }

  private async save(images: ImageInfo[]): Promise<void> {
    const file: ImagesFile = { format: 1, images };
    await writeFileAtomic(this.listFile, JSON.stringify(file, null, 2) + '\n');
    this.images = images;
  }
}
