import type { LightMyRequestResponse } from 'fastify';
import { Secret, TOTP } from 'otpauth';
import { expect } from 'vitest';
import type { Session, TestContext } from './context.ts';

/** One TOTP time step (RFC 6238's 30 seconds). */
export const TOTP_STEP = 30_000;

/** The TOTP code of `secret` (base32) at the clock's time, `offsetSteps` steps away. */
export function totpCode(clock: { now(): Date }, secret: string, offsetSteps = 0): string {
  return TOTP.generate({
    secret: Secret.fromBase32(secret),
    timestamp: clock.now().getTime() + offsetSteps * TOTP_STEP,
  });
}

export interface TotpEnrolment {
  /** The base32 secret the enrolment answered with. */
  secret: string;
  /** The ten recovery codes the confirmation answered with. */
  recoveryCodes: string[];
  /** The confirmation's answer. */
  confirm: LightMyRequestResponse;
}

/**
 * Turns TOTP on for `s`: starts the enrolment and confirms it with the current code, expecting
 * 200 for both (a fresh sign-in needs no step-up). The clock is not moved: the confirming code's
 * step is spent, so a test that signs in with a code next advances the clock by `TOTP_STEP`.
 */
export async function enrolTotp(
  ctx: Pick<TestContext, 'app' | 'clock'>,
  s: Session,
): Promise<TotpEnrolment> {
  const start = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/mfa/totp',
    headers: s.headers,
  });
  expect(start.statusCode, start.body).toBe(200);
  const { secret } = start.json<{ secret: string }>();
  const confirm = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/mfa/totp/confirm',
    headers: s.headers,
    payload: { code: totpCode(ctx.clock, secret) },
  });
  expect(confirm.statusCode, confirm.body).toBe(200);
  const { recoveryCodes } = confirm.json<{ recoveryCodes: string[] }>();
  return { secret, recoveryCodes, confirm };
}
