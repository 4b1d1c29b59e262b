/** `nitride image …`: the boot image allowlist (kernels, initrds) `vm run` checks. */
import path from 'node:path';
import { Command } from 'commander';
import { pathTo } from '../../api/control.js';
import { VMS_API, type AllowImageRequest, type ImageInfo, type RemovedImage } from '../../api/vms.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, formatBytes, renderFields, renderTable } from '../output.js';

const render = (i: ImageInfo): string => renderFields({ sha256: i.sha256, name: i.name, size: formatBytes(i.size), source: i.source, added: i.addedAt });

export function imageCommand(): Command {
  const image = new Command('image').description('boot image allowlist: only kernels and initrds listed here boot');

  image.addCommand(
    clientVerb(new Command('allow').description("allow a kernel or initrd: records its SHA-256 (the daemon keeps a private copy to boot)").argument('<file>', 'image file'))
      .option('--name <name>', 'a name (default: the file name)')
      .action(async (file: string, options: ClientOptions & { name?: string }) => {
        const body: AllowImageRequest = { path: path.resolve(file), ...(options.name ? { name: options.name } : {}) };
        const r = await clientOf(options).call<ImageInfo>('POST', VMS_API.images, body);
        emit(options, r, render);
      }),
  );
  image.addCommand(
    clientVerb(new Command('list').description('list allowed images')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<ImageInfo[]>(VMS_API.images);
      emit(options, all, (rows) =>
        rows.length === 0 ? 'no allowed images' : renderTable(rows, { sha256: (i) => i.sha256, name: (i) => i.name, size: (i) => formatBytes(i.size), added: (i) => i.addedAt }),
      );
    }),
  );
  image.addCommand(
    clientVerb(new Command('remove').description('remove an image from the allowlist').argument('<ref>', 'SHA-256 (or a prefix of 8+ hex digits) or name')).action(
      async (ref: string, options: ClientOptions) => {
        const r = await clientOf(options).call<RemovedImage>('DELETE', pathTo(VMS_API.image, { id: ref }));
        emit(options, r, () => `removed ${r.name} (${r.sha256})`);
      },
    ),
  );
  return image;
}
