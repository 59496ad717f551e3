import type { Options } from '@node-rs/argon2';
import { defaultHashConcurrency } from './hash-queue.ts';
import { createHashWorkers } from './hash-workers.ts';

/** `Algorithm.Argon2id` of @node-rs/argon2 (an ambient const enum, not importable as a value). */
const ARGON2ID = 2 as Options['algorithm'];

/**
 * Password hashing with argon2id at the OWASP baseline (19 MiB, 2 passes, 1 lane). Hashing runs on
 * threads of its own at a lower scheduling priority, never on the event loop (hash-workers.ts).
 */
export const argon2Params: Options = {
  algorithm: ARGON2ID,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
};

/**
 * Every argon2 call of the process goes through these threads: at most (cores - 1) at once, so a
 * storm of sign-ins never takes the event loop's core (see hash-queue.ts), and at niceness 10,
 * so the event loop has the CPU whenever it wakes (see hash-workers.ts). Unknown users, wrong
 * passwords and locked accounts all wait in the same queue alike, so their answer times stay equal.
 */
const hashing = createHashWorkers({ threads: defaultHashConcurrency(), niceness: 10 });

/** Hashes running and waiting, and the hashing threads' niceness (bench and tests). */
export const passwordHashingStats = () => hashing.stats();

export const MIN_PASSWORD_LENGTH = 15;
export const MAX_PASSWORD_LENGTH = 1024;

export function hashPassword(password: string): Promise<string> {
  const normalized = password.normalize('NFC');
  return hashing.hash(normalized, argon2Params);
}

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  try {
    const normalized = password.normalize('NFC');
    return await hashing.verify(stored, normalized);
  } catch {
    // A malformed stored hash is a failed sign-in, never a crash.
    return false;
  }
}

/**
 * Whether a stored hash was made with weaker settings than `argon2Params` (another algorithm,
 * less memory, fewer passes, other lanes, or a string that does not parse): re-hash it at the
 * next successful sign-in, while the password is at hand.
 */
export function needsRehash(stored: string): boolean {
  const phc = /^\$(argon2(?:id|i|d))\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(stored);
  if (!phc) return true;
  const [, algorithm, version, m, t, p] = phc;
  return (
    algorithm !== 'argon2id' ||
    Number(version) !== 19 ||
    Number(m) < (argon2Params.memoryCost ?? 0) ||
    Number(t) < (argon2Params.timeCost ?? 0) ||
    Number(p) !== (argon2Params.parallelism ?? 1)
  );
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
