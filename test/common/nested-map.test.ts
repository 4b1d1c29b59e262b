import { describe, expect, it } from 'vitest';
import { NestedMap } from '../../src/common/nested-map.js';

describe('NestedMap', () => {
  it('keeps values by two keys and drops an outer key with its last inner one', () => {
    const m = new NestedMap<string, number, string>();
    m.set('a', 1, 'x');
    m.set('a', 2, 'y');
    m.set('b', 1, 'z');
    expect(m.get('a', 1)).toBe('x');
    expect(m.get('b', 2)).toBeUndefined();
    expect(m.delete('a', 3)).toBe(false);
    expect(m.delete('a', 1)).toBe(true);
    expect([...m.groups()].map(([k, inner]) => [k, [...inner]])).toEqual([['a', [[2, 'y']]], ['b', [[1, 'z']]]]);
    expect(m.delete('a', 2)).toBe(true);
    expect([...m.groups()].map(([k]) => k)).toEqual(['b']);
    m.clear();
    expect([...m.groups()]).toEqual([]);
  });
});
