/** Control API routes of volumes: /v1/volumes… */
import { z } from 'zod';
import { StreamedReply, type ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import { MAX_VOLUME_SIZE, type VolumeManager } from '../../volume/manager.js';

const VolumeId = z.string().regex(/^vol-[0-9a-f]{17}$/, 'must be a volume id (vol- and 17 hex digits)');
const Size = z.number().int().positive().max(MAX_VOLUME_SIZE);
const Name = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, . _ - only');
const AbsolutePath = z.string().min(1).max(4096).startsWith('/', 'must be an absolute path');

/** The `:id` path parameter, checked (400 if it is not a volume id). */
const idOf = (params: Record<string, string>): string => parseOrThrow(VolumeId, params.id, 'volume id');

export function registerVolumeRoutes(control: ControlServer, volumes: VolumeManager): void {
  control.register({
    method: 'POST',
    path: '/v1/volumes',
    audit: 'volume.create',
    status: 201,
    body: z
      .object({
        type: z.enum(['ebs', 'ephemeral']),
        size: Size,
        name: Name.optional(),
        kmsKeyId: z.string().min(1).max(256).optional(),
        multiAttach: z.boolean().optional(),
      })
      .strict(),
    handle: async ({ body, audit }) => {
      const info = await volumes.create(body);
      audit.target = info.id;
      audit.details = { type: info.type, size: info.size, kmsKeyId: info.encryption.kmsKeyId };
      return info;
    },
  });
  control.register({ method: 'GET', path: '/v1/volumes', handle: () => volumes.describeAll() });
  control.register({ method: 'GET', path: '/v1/volumes/:id', handle: ({ params }) => volumes.describe(idOf(params)) });
  control.register({
    method: 'DELETE',
    path: '/v1/volumes/:id',
    audit: 'volume.delete',
    auditTarget: 'id',
    handle: async ({ params }) => {
      const id = idOf(params);
      await volumes.delete(id);
      return { id, deleted: true };
    },
  });
  control.register({
    method: 'POST',
    path: '/v1/volumes/:id/resize',
    audit: 'volume.resize',
    auditTarget: 'id',
    body: z.object({ size: Size }).strict(),
    handle: ({ params, body }) => volumes.resize(idOf(params), body.size),
  });
  control.register({
    method: 'POST',
    path: '/v1/volumes/:id/rewrap',
    audit: 'volume.rewrap',
    auditTarget: 'id',
    body: z.object({ kmsKeyId: z.string().min(1).max(256).optional() }).strict(),
    handle: ({ params, body }) => volumes.rewrap(idOf(params), body.kmsKeyId),
  });
  for (const direction of ['export', 'import'] as const) {
    control.register({
      method: 'POST',
      path: `/v1/volumes/:id/${direction}`,
      audit: `volume.${direction}`,
      auditTarget: 'id',
      body: z.object({ path: AbsolutePath }).strict(),
      handle: ({ params, body, signal, audit }) => {
        const id = idOf(params);
        audit.details = { path: body.path };
        return new StreamedReply((progress) => {
          let last = 0;
          const report = (p: { done: number; total: number }) => {
            // At most ~10 progress lines a second.
            const now = Date.now();
            if (now - last >= 100 || p.done === p.total) {
              last = now;
              progress(p);
            }
          };
          return direction === 'export' ? volumes.exportTo(id, body.path, signal, report) : volumes.importFrom(id, body.path, signal, report);
        });
      },
    });
  }
}
