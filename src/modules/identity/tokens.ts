import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/** 256-bit opaque token, base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Tokens are high-entropy, so a plain SHA-256 is the right storage hash (no need for argon2). */
export function hashToken(token: string): string {
  // The one-shot hash: a third of createHash's cost, paid on every authenticated request.
  return hash('sha256', token, 'hex');
}

/** Constant-time comparison of two strings of any length. */
export function safeEqual(a: string, b: string): boolean {
  const ha = hash('sha256', a, 'buffer');
  const hb = hash('sha256', b, 'buffer');
  return timingSafeEqual(ha, hb);
}

/**
 * The anti-CSRF token of a session, derived from its secret token: a cross-site page can neither
 * read the cookie nor compute this, and nothing extra is stored.
 */
export function csrfTokenFor(sessionToken: string): string {
  return hash('sha256', `custos-csrf\u0000${sessionToken}`, 'base64url');
}
