/** zod pieces the areas' schemas share (server side only: the CLI never loads zod). */
import { z } from 'zod';
import { idFormat, ID_PATTERNS, type ResourceKind } from './ids.js';

/** A resource id of one kind. */
export const resourceId = (kind: ResourceKind, what: string): z.ZodString => z.string().regex(ID_PATTERNS[kind], `must be a ${what} (${idFormat(kind)})`);

export const AbsolutePath = z.string().min(1).max(4096).startsWith('/', 'must be an absolute path');

/** Names of volumes and VMs: they appear in paths and on command lines. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const safeName = (max: number): z.ZodString => z.string().min(1).max(max).regex(NAME_PATTERN, 'letters, digits, . _ - only');
