import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';

function capture(): { lines: () => string; stream: Writable & { write: (s: string) => boolean } } {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { lines: () => text, stream: stream as never };
}

describe('logger', () => {
  it('redacts secret-named fields and never prints byte buffers', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream }).child({ component: 'test' });
    const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    log.info({ key: 'supersecret', volume: { dataKey: 'alsosecret', id: 'vol-1' } }, 'attached');
    log.info({ material: key, nested: { deep: [key] } }, 'bytes');
    const text = out.lines();
    expect(text).not.toContain('supersecret');
    expect(text).not.toContain('alsosecret');
    expect(text).toContain('[redacted]');
    expect(text).toContain('[16 bytes]');
    // pino would otherwise print the buffer's bytes as a number array
    expect(text).not.toMatch(/"data":\[0,17,34/);
    expect(text).toContain('"component":"test"');
    expect(text).toContain('"id":"vol-1"');
  });
});
