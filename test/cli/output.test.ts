import { describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/cli/output.js';

describe('CLI output', () => {
  it('shell quoting for vm qemu-args', () => {
    expect(shellQuote(['a', 'b c', "it's", '{"x":1}'])).toBe(`a 'b c' 'it'\\''s' '{"x":1}'`);
  });
});
