import { createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createKeyCache, keyRefId } from './key-cache.ts';

const keyOf = (n: number): KeyObject => createSecretKey(Buffer.alloc(32, n));

describe('createKeyCache', () => {
  it('evicts the least recently used key beyond its size', () => {
    const cache = createKeyCache({ maxEntries: 2 });
    cache.set('a', keyOf(1));
    cache.set('b', keyOf(2));
    expect(cache.get('a')).toBeDefined(); // a is now the most recent
    cache.set('c', keyOf(3));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('c')).toBeDefined();
    expect(cache.size).toBe(2);
  });

  it('evicts in least recently used order in a larger cache too', () => {
    const cache = createKeyCache({ maxEntries: 4 });
    for (const id of ['a', 'b', 'c', 'd']) cache.set(id, keyOf(1));
    expect(cache.get('a')).toBeDefined();
    cache.set('e', keyOf(2));
    expect(cache.get('c')).toBeDefined();
    cache.set('f', keyOf(3));
    expect(['a', 'b', 'c', 'd', 'e', 'f'].filter((id) => cache.get(id) !== undefined)).toEqual([
      'a',
      'c',
      'e',
      'f',
    ]);
  });

  it('keeps a key in use while many others come and go', () => {
    const cache = createKeyCache({ maxEntries: 100 });
    const hot = keyOf(9);
    cache.set('hot', hot);
    for (let i = 0; i < 1000; i++) {
      cache.set(`cold${i}`, keyOf(i % 200));
      expect(cache.get('hot')).toBe(hot);
    }
    expect(cache.size).toBe(100);
    expect(cache.get('cold0')).toBeUndefined();
    expect(cache.get('cold999')).toBeDefined();
  });

  it('forgets a deleted key (crypto-shredding)', () => {
    const cache = createKeyCache({ maxEntries: 10 });
    cache.set('subject:1@1', keyOf(1));
    expect(cache.delete('subject:1@1')).toBe(true);
    expect(cache.get('subject:1@1')).toBeUndefined();
    expect(cache.delete('subject:1@1')).toBe(false);
  });

  it('loads a missing key once for concurrent callers', async () => {
    const cache = createKeyCache({ maxEntries: 10 });
    let loads = 0;
    const load = async (): Promise<KeyObject> => {
      loads++;
      await Promise.resolve();
      return keyOf(5);
    };
    const [a, b] = await Promise.all([cache.getOrLoad('k', load), cache.getOrLoad('k', load)]);
    expect(a).toBe(b);
    expect(loads).toBe(1);
    expect(await cache.getOrLoad('k', load)).toBe(a);
    expect(loads).toBe(1);
  });

  it('does not cache a key whose load finishes after it was deleted', async () => {
    const cache = createKeyCache({ maxEntries: 10 });
    let finish: (key: KeyObject) => void = () => undefined;
    const pending = cache.getOrLoad('k', () => new Promise((resolve) => (finish = resolve)));
    cache.delete('k');
    finish(keyOf(1));
    await pending;
    expect(cache.get('k')).toBeUndefined();
  });

  it('does not cache a failed load', async () => {
    const cache = createKeyCache({ maxEntries: 10 });
    await expect(cache.getOrLoad('k', () => Promise.reject(new Error('hsm down')))).rejects.toThrow(
      'hsm down',
    );
    expect(await cache.getOrLoad('k', () => Promise.resolve(keyOf(2)))).toBeDefined();
  });

  it('serves as a decryptField resolver keyed by id and version', () => {
    const cache = createKeyCache({ maxEntries: 10 });
    const key = keyOf(1);
    cache.set(keyRefId({ keyId: 'tenant:t1', keyVersion: 2 }), key);
    const resolve = cache.resolver();
    expect(resolve({ keyId: 'tenant:t1', keyVersion: 2 })).toBe(key);
    expect(resolve({ keyId: 'tenant:t1', keyVersion: 1 })).toBeUndefined();
  });

  it('refuses a size below one', () => {
    expect(() => createKeyCache({ maxEntries: 0 })).toThrow(RangeError);
  });
});
