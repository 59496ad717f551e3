import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from './passwords.ts';
import { AppError } from '../../errors.ts';

/**
 * NIST SP 800-63B password rules: a minimum length counted in code points after NFC, a generous
 * maximum, any characters, no composition rules, and a refusal of passwords that are common or
 * built from what an attacker knows about the account (e-mail, name, organisation).
 */
export interface PasswordContext {
  email?: string | undefined;
  name?: string | undefined;
  tenantSlug?: string | undefined;
  tenantName?: string | undefined;
}

export interface PasswordPolicyOptions {
  /** 15 for password-only accounts (NIST); 8 is allowed once a second factor is enrolled. */
  minLength?: number;
  /** At least 64 must be accepted; the cap stops hashing abuse. */
  maxLength?: number;
}

export type PasswordProblem =
  'too_short' | 'too_long' | 'common' | 'from_email' | 'from_name' | 'from_tenant';

export interface PasswordRejection {
  problem: PasswordProblem;
  reason: string;
}

let common: Promise<ReadonlySet<string>> | undefined;

/** The zxcvbn-ts list of about 49,000 common passwords, loaded on first use only. */
function commonPasswords(): Promise<ReadonlySet<string>> {
  common ??= import('@zxcvbn-ts/language-common').then(
    ({ dictionary }) => new Set(dictionary['passwords-common'].map((p) => p.toLowerCase())),
  );
  return common;
}

/** Left over once the given words, digits, punctuation and spaces are taken out. */
const FILLER = /[\p{N}\p{P}\p{S}\p{Z}\s]/gu;

function remainder(password: string, words: readonly string[]): string {
  let rest = password;
  for (const word of [...words].sort((a, b) => b.length - a.length)) {
    rest = rest.split(word).join('');
  }
  return rest.replace(FILLER, '');
}

/** The words of a value worth looking for in a password: the whole, and its parts of 3 or more. */
function words(value: string | undefined): string[] {
  if (!value) return [];
  const whole = value.normalize('NFC').toLowerCase().trim();
  const parts = whole.split(/[^\p{L}\p{N}]+/u).filter((p) => [...p].length >= 3);
  return whole === '' ? parts : [whole, ...parts];
}

/** Fewer own code points than this, once the account's words are removed: "built from" them. */
const OWN_MATERIAL = 8;

function builtFrom(password: string, source: string[]): boolean {
  if (!source.some((word) => password.includes(word))) return false;
  return [...remainder(password, source)].length < OWN_MATERIAL;
}

/** A password that is a common one, repeated, or followed by digits or symbols. */
function isCommon(password: string, list: ReadonlySet<string>): boolean {
  if (list.has(password)) return true;
  const trimmed = password.replace(/[\p{N}\p{P}\p{S}\s]+$/u, '');
  if (trimmed !== password && list.has(trimmed)) return true;
  const cps = [...trimmed];
  for (let size = 1; size <= cps.length / 2; size++) {
    if (cps.length % size !== 0) continue;
    const unit = cps.slice(0, size).join('');
    if (unit.repeat(cps.length / size) === trimmed && (size <= 3 || list.has(unit))) return true;
  }
  return false;
}

/** Every reason the password is refused (empty when it is acceptable). */
export async function checkPassword(
  password: string,
  context: PasswordContext = {},
  options: PasswordPolicyOptions = {},
): Promise<PasswordRejection[]> {
  const min = options.minLength ?? MIN_PASSWORD_LENGTH;
  const max = options.maxLength ?? MAX_PASSWORD_LENGTH;
  if (min < 8 || max < 64 || max > MAX_PASSWORD_LENGTH || min > max) {
    throw new TypeError(`password length bounds out of range: ${min}..${max}`);
  }
  const normalized = password.normalize('NFC');
  const length = [...normalized].length;
  if (length < min) return [{ problem: 'too_short', reason: `must be at least ${min} characters` }];
  if (length > max) return [{ problem: 'too_long', reason: `must be at most ${max} characters` }];
  const lower = normalized.toLowerCase();
  const problems: PasswordRejection[] = [];
  if (isCommon(lower, await commonPasswords())) {
    problems.push({ problem: 'common', reason: 'is a commonly used or breached password' });
  }
  const email = context.email?.normalize('NFC').toLowerCase().trim();
  const local = email?.split('@')[0];
  // The whole address and its local part; the domain is usually the organisation's, checked below.
  if (builtFrom(lower, [...(email ? [email] : []), ...words(local)])) {
    problems.push({ problem: 'from_email', reason: 'must not be built from the e-mail address' });
  }
  if (builtFrom(lower, words(context.name))) {
    problems.push({ problem: 'from_name', reason: "must not be built from the user's name" });
  }
  if (builtFrom(lower, [...words(context.tenantSlug), ...words(context.tenantName)])) {
    problems.push({
      problem: 'from_tenant',
      reason: "must not be built from the organisation's name or sign-in identifier",
    });
  }
  return problems;
}

/** Throws `auth.password_rejected` (400) naming every reason, without echoing the password. */
export async function assertPasswordAcceptable(
  password: string,
  context: PasswordContext = {},
  options: PasswordPolicyOptions & { field?: string } = {},
): Promise<void> {
  const problems = await checkPassword(password, context, options);
  if (problems.length === 0) return;
  const field = options.field ?? 'body/password';
  throw new AppError('invalid', 'auth.password_rejected', 'password rejected by policy', {
    detail: problems.map((p) => `${field}: ${p.reason}`).join('; '),
    errors: problems.map((p) => ({ field, reason: p.reason })),
  });
}
