/**
 * mallocTrim (native/src/process.cc): glibc's malloc_trim(0), called by the fleet mirror after a
 * large batch. Whether pages go back depends on the heap's state: only the call and its answer are checked.
 */
import { describe, expect, it } from 'vitest';
import { mallocTrim } from '../../src/native/addon.js';

describe('mallocTrim', () => {
  it('trims and says whether any page went back', () => {
    expect(typeof mallocTrim()).toBe('boolean');
  });
});
