import { randomBytes } from 'node:crypto';

/**
 * API keys read `custos_<prefix>_<secret>`: the fixed start lets secret scanners recognise a
 * leaked key; the prefix (12 hex) finds the row; only SHA-256 of the secret (256 bits) is stored.
 */
export const API_KEY_PATTERN = /^custos_(?<prefix>[0-9a-f]{12})_(?<secret>[A-Za-z0-9_-]{43})$/;

export function newApiKey(): { key: string; prefix: string; secret: string } {
  const prefix = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { key: `custos_${prefix}_${secret}`, prefix, secret };
}
