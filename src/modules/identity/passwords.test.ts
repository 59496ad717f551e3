import { describe, expect, it } from 'vitest';
import { hashPassword, needsRehash } from './passwords.ts';

describe('needsRehash', () => {
  it('keeps a hash made with the current parameters', async () => {
    expect(needsRehash(await hashPassword('river cobalt 9q tango'))).toBe(false);
  });

  it('upgrades weaker, other-algorithm or unreadable hashes', () => {
    const tail = '$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA';
    expect(needsRehash(`$argon2id$v=19$m=8192,t=1,p=1${tail}`)).toBe(true);
    expect(needsRehash(`$argon2id$v=19$m=19456,t=1,p=1${tail}`)).toBe(true);
    expect(needsRehash(`$argon2id$v=19$m=8192,t=2,p=1${tail}`)).toBe(true);
    expect(needsRehash(`$argon2i$v=19$m=19456,t=2,p=1${tail}`)).toBe(true);
    expect(needsRehash(`$argon2id$v=16$m=19456,t=2,p=1${tail}`)).toBe(true);
    expect(needsRehash('$2b$12$abcdefghijklmnopqrstuv')).toBe(true);
    expect(needsRehash(`$argon2id$v=19$m=65536,t=3,p=1${tail}`)).toBe(false);
  });
});
