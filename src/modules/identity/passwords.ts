import { hash, verify, type Options } from '@node-rs/argon2';

/** `Algorithm.Argon2id` of @node-rs/argon2 (an ambient const enum, not importable as a value). */
const ARGON2ID = 2 as Options['algorithm'];

/**
 * Password hashing with argon2id at the OWASP baseline (19 MiB, 2 passes, 1 lane). Hashing runs on
 * libuv's thread pool, never on the event loop.
 */
export const argon2Params: Options = {
  algorithm: ARGON2ID,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
};

export const MIN_PASSWORD_LENGTH = 15;
export const MAX_PASSWORD_LENGTH = 1024;

export function hashPassword(password: string): Promise<string> {
  return hash(password.normalize('NFC'), argon2Params);
}

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, password.normalize('NFC'));
  } catch {
    // A malformed stored hash is a failed sign-in, never a crash.
    return false;
  }
}

let dummy: Promise<string> | undefined;

/**
 * Verifies against a throw-away hash with the same parameters, so an unknown user costs the
 * same time as a wrong password.
 */
export async function burnPasswordCheck(password: string): Promise<false> {
  dummy ??= hashPassword('custos-dummy-password-for-timing');
  await verifyPassword(await dummy, password);
  return false;
}
