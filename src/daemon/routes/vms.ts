/** Control API routes of boot images and VMs (contract: src/api/vms.ts). */
import type { Deleted } from '../../api/control.js';
import { VMS_API, type QemuArgsReply, type RemovedImage } from '../../api/vms.js';
import { AllowImageBody, ConsoleOffsetQuery, ImageRef, RunVmBody, StartVmBody, StopVmBody, VmRef } from '../../api/vms.schema.js';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { ImageAllowlist } from '../../vm/images.js';
import type { VmManager } from '../../vm/manager.js';

const vmRef = (params: Record<string, string>): string => parseOrThrow(VmRef, params.id, 'VM id or name');

export function registerVmRoutes(control: ControlServer, vms: VmManager, images: ImageAllowlist): void {
  control.register({
    method: 'POST',
    path: VMS_API.images,
    audit: 'image.allow',
    status: 201,
    body: AllowImageBody,
    handle: async ({ body, audit }) => {
      const image = await images.allow(body.path, body.name);
      audit.target = image.sha256;
      audit.details = { name: image.name, source: image.source, size: image.size };
      return image;
    },
  });
  control.register({ method: 'GET', path: VMS_API.images, handle: () => images.list() });
  control.register({
    method: 'DELETE',
    path: VMS_API.image,
    audit: 'image.remove',
    auditTarget: 'id',
    handle: async ({ params, audit }): Promise<RemovedImage> => {
      const image = await images.remove(parseOrThrow(ImageRef, params.id, 'image hash or name'));
      audit.target = image.sha256;
      return { ...image, removed: true };
    },
  });

  control.register({
    method: 'POST',
    path: VMS_API.vms,
    audit: 'vm.run',
    status: 201,
    body: RunVmBody,
    handle: async ({ body, audit }) => {
      audit.details = { name: body.name, kernel: body.kernel, initrd: body.initrd, volumes: body.volumes, enis: body.enis, forceAttach: body.forceAttach, startTimeoutS: body.startTimeoutS };
      const vm = await vms.run(body);
      audit.target = vm.id;
      return vm;
    },
  });
  control.register({
    method: 'POST',
    path: VMS_API.qemuArgs,
    body: RunVmBody,
    handle: async ({ body }): Promise<QemuArgsReply> => ({ args: await vms.qemuArgsFor(body) }),
  });
  control.register({ method: 'GET', path: VMS_API.vms, handle: () => vms.list() });
  control.register({ method: 'GET', path: VMS_API.vm, handle: ({ params }) => vms.describe(vmRef(params)) });
  control.register({
    method: 'POST',
    path: VMS_API.stop,
    audit: 'vm.stop',
    auditTarget: 'id',
    body: StopVmBody,
    handle: ({ params, body }) => vms.stop(vmRef(params), body.force ?? false),
  });
  control.register({
    method: 'POST',
    path: VMS_API.start,
    audit: 'vm.start',
    auditTarget: 'id',
    body: StartVmBody,
    handle: ({ params, body, audit }) => {
      audit.details = { forceAttach: body.forceAttach, startTimeoutS: body.startTimeoutS };
      return vms.start(vmRef(params), body);
    },
  });
  control.register({
    method: 'DELETE',
    path: VMS_API.vm,
    audit: 'vm.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const ref = vmRef(params);
      await vms.remove(ref);
      return { id: ref, deleted: true };
    },
  });
  control.register({
    method: 'GET',
    path: VMS_API.console,
    query: ConsoleOffsetQuery,
    handle: ({ params, query }) => vms.console(vmRef(params), query.offset ?? 0, query.previous),
  });
}
