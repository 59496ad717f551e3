import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** 256-bit opaque token, base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Tokens are high-entropy, so a plain SHA-256 is the right storage hash (no need for argon2). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time comparison of two strings of any length. */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

/**
 * The anti-CSRF token of a session, derived from its secret token: a cross-site page can neither
 * read the cookie nor compute this, and nothing extra is stored.
 */
export function csrfTokenFor(sessionToken: string): string {
  return createHash('sha256').update('custos-csrf\u0000').update(sessionToken).digest('base64url');
}
