/**
 * Resource ids, as AWS writes them: a prefix, a dash and 17 hex digits (`vol-0123456789abcdef0`).
 * The one definition every generator, schema and check uses.
 */

const ID_PREFIXES = { volume: 'vol', vpc: 'vpc', subnet: 'subnet', eni: 'eni', vm: 'i', sg: 'sg', snapshot: 'snap', acl: 'acl', flowLog: 'fl' } as const;
export type ResourceKind = keyof typeof ID_PREFIXES;

const ID_HEX_DIGITS = 17;

const patternOf = (kind: ResourceKind): RegExp => new RegExp(`^${ID_PREFIXES[kind]}-[0-9a-f]{${ID_HEX_DIGITS}}$`);

/** The exact format of each kind's ids. */
export const ID_PATTERNS: Readonly<Record<ResourceKind, RegExp>> = {
  volume: patternOf('volume'),
  vpc: patternOf('vpc'),
  subnet: patternOf('subnet'),
  eni: patternOf('eni'),
  vm: patternOf('vm'),
  sg: patternOf('sg'),
  snapshot: patternOf('snapshot'),
  acl: patternOf('acl'),
  flowLog: patternOf('flowLog'),
};

export function isResourceId(kind: ResourceKind, text: string): boolean {
  return ID_PATTERNS[kind].test(text);
}

/** How the format reads in an error message: `vol- and 17 hex digits`. */
export function idFormat(kind: ResourceKind): string {
  return `${ID_PREFIXES[kind]}- and ${ID_HEX_DIGITS} hex digits`;
}

/** A new id; `random` is the caller's source of bytes (node:crypto's randomBytes, or a test's). */
export function newResourceId(kind: ResourceKind, random: (bytes: number) => Buffer): string {
  return `${ID_PREFIXES[kind]}-${random(Math.ceil(ID_HEX_DIGITS / 2)).toString('hex').slice(0, ID_HEX_DIGITS)}`;
}
