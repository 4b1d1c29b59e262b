/** NBD strings: UTF-8, no NUL, at most 4096 bytes (proto.md "Conventions"). */
import { NbdLimits } from './constants.js';
import { NbdOptionError } from './errors.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decode a string received from the client. Violations are option errors (NBD_REP_ERR_INVALID),
 * `what` names the field in the message.
 */
export function decodeNbdString(bytes: Buffer, what: string): string {
  if (bytes.length > NbdLimits.MAX_STRING_BYTES) {
    throw new NbdOptionError(`${what} is ${bytes.length} bytes, more than ${NbdLimits.MAX_STRING_BYTES}`);
  }
  if (bytes.includes(0)) throw new NbdOptionError(`${what} contains a NUL byte`);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new NbdOptionError(`${what} is not valid UTF-8`);
  }
}

/**
 * Encode a string we send that the spec bounds (names, context names). These come from our own
 * configuration, so a violation is a bug: RangeError.
 */
export function encodeNbdString(text: string, what: string): Buffer {
  if (text.includes('\0')) throw new RangeError(`${what} contains a NUL character`);
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > NbdLimits.MAX_STRING_BYTES) {
    throw new RangeError(`${what} is ${bytes.length} bytes, more than ${NbdLimits.MAX_STRING_BYTES}`);
  }
  return bytes;
}

/**
 * Encode a human-readable message, never failing: NULs are dropped and the result is cut to
 * `maxBytes` on a UTF-8 character boundary (messages often embed error text we do not control).
 */
export function encodeNbdMessage(text: string, maxBytes: number = NbdLimits.MAX_STRING_BYTES): Buffer {
  const bytes = Buffer.from(text.replaceAll('\0', ''), 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  // Back off over continuation bytes (10xxxxxx) so we never split a code point.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}
