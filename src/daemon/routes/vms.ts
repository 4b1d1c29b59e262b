/** Control API routes of boot images and VMs: /v1/images…, /v1/vms… */
import { z } from 'zod';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { ImageAllowlist } from '../../vm/images.js';
import type { VmManager } from '../../vm/manager.js';

const AbsolutePath = z.string().min(1).max(4096).startsWith('/', 'must be an absolute path');
const Name = z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, . _ - only');
/** A VM id (i-…) or name. */
const VmRef = z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a VM id or name');
const ImageRef = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._+-]*$/, 'must be an image hash or name');

const vmRef = (params: Record<string, string>): string => parseOrThrow(VmRef, params.id, 'VM id or name');

const RunBody = z
  .object({
    name: Name,
    kernel: AbsolutePath,
    initrd: AbsolutePath.optional(),
    append: z.string().max(4096).optional(),
    memoryMiB: z.number().int().optional(),
    cpus: z.number().int().optional(),
    accel: z.enum(['tcg', 'kvm']).optional(),
    volumes: z.array(z.string().max(64)).max(16).optional(),
    enis: z.array(z.string().max(64)).max(8).optional(),
  })
  .strict();

export function registerVmRoutes(control: ControlServer, vms: VmManager, images: ImageAllowlist): void {
  control.register({
    method: 'POST',
    path: '/v1/images',
    audit: 'image.allow',
    status: 201,
    body: z.object({ path: AbsolutePath, name: ImageRef.optional() }).strict(),
    handle: async ({ body, audit }) => {
      const image = await images.allow(body.path, body.name);
      audit.target = image.sha256;
      audit.details = { name: image.name, source: image.source, size: image.size };
      return image;
    },
  });
  control.register({ method: 'GET', path: '/v1/images', handle: () => images.list() });
  control.register({
    method: 'DELETE',
    path: '/v1/images/:id',
    audit: 'image.remove',
    auditTarget: 'id',
    handle: async ({ params, audit }) => {
      const image = await images.remove(parseOrThrow(ImageRef, params.id, 'image hash or name'));
      audit.target = image.sha256;
      return { ...image, removed: true };
    },
  });

  control.register({
    method: 'POST',
    path: '/v1/vms',
    audit: 'vm.run',
    status: 201,
    body: RunBody,
    handle: async ({ body, audit }) => {
      audit.details = { name: body.name, kernel: body.kernel, initrd: body.initrd, volumes: body.volumes, enis: body.enis };
      const vm = await vms.run(body);
      audit.target = vm.id;
      return vm;
    },
  });
  control.register({
    method: 'POST',
    path: '/v1/vms/qemu-args',
    body: RunBody,
    handle: async ({ body }) => ({ args: await vms.qemuArgsFor(body) }),
  });
  control.register({ method: 'GET', path: '/v1/vms', handle: () => vms.list() });
  control.register({ method: 'GET', path: '/v1/vms/:id', handle: ({ params }) => vms.describe(vmRef(params)) });
  control.register({
    method: 'POST',
    path: '/v1/vms/:id/stop',
    audit: 'vm.stop',
    auditTarget: 'id',
    body: z.object({ force: z.boolean().optional() }).strict(),
    handle: ({ params, body }) => vms.stop(vmRef(params), body.force ?? false),
  });
  control.register({
    method: 'DELETE',
    path: '/v1/vms/:id',
    audit: 'vm.delete',
    auditTarget: 'id',
    handle: async ({ params }) => {
      const ref = vmRef(params);
      await vms.remove(ref);
      return { id: ref, deleted: true };
    },
  });
  control.register({
    method: 'GET',
    path: '/v1/vms/:id/console',
    query: z.object({ offset: z.coerce.number().int().optional() }).strict(),
    handle: ({ params, query }) => vms.console(vmRef(params), query.offset ?? 0),
  });
}
