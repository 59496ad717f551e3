import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Secret } from 'otpauth';
import { describe, expect, it } from 'vitest';
import {
  checkTotp,
  hashRecoveryCode,
  newRecoveryCodes,
  newTotpSecret,
  totpStep,
  totpUri,
  type TotpAlgorithm,
} from './totp.ts';

interface Vectors {
  params: { stepSeconds: number; digits: number };
  secretsHex: Record<TotpAlgorithm, string>;
  tests: Array<{ unixTime: number; mode: TotpAlgorithm; totp: string }>;
}
const vectors = JSON.parse(
  readFileSync(
    new URL('../../../test/fixtures/rfc-vectors/rfc6238_totp.json', import.meta.url),
    'utf8',
  ),
) as Vectors;

function hasOathtool(): boolean {
  try {
    execFileSync('oathtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const oathtool = hasOathtool();

describe('RFC 6238 appendix B', () => {
  it.each(vectors.tests.map((t) => [t.mode, t.unixTime, t.totp] as const))(
    'accepts the %s code at %i s (%s)',
    (mode, unixTime, totp) => {
      const result = checkTotp({
        secret: Secret.fromHex(vectors.secretsHex[mode]),
        code: totp,
        at: new Date(unixTime * 1000),
        algorithm: mode,
        digits: vectors.params.digits,
        period: vectors.params.stepSeconds,
        window: 0,
      });
      expect(result).toEqual({ ok: true, step: Math.floor(unixTime / 30) });
    },
  );

  it('refuses each vector one digit off', () => {
    for (const t of vectors.tests) {
      const last = Number(t.totp.at(-1));
      const code = t.totp.slice(0, -1) + String((last + 1) % 10);
      const result = checkTotp({
        secret: Secret.fromHex(vectors.secretsHex[t.mode]),
        code,
        at: new Date(t.unixTime * 1000),
        algorithm: t.mode,
        digits: 8,
        window: 0,
      });
      expect(result).toEqual({ ok: false, reason: 'bad_code' });
    }
  });
});

describe('checkTotp window and replay', () => {
  const secret = newTotpSecret();
  const at = new Date('2026-03-01T12:00:10Z');
  const codeAt = (offsetSteps: number) =>
    execFileSync('oathtool', [
      '--totp',
      '-b',
      secret,
      '-N',
      new Date(at.getTime() + offsetSteps * 30_000).toISOString().replace('T', ' ').slice(0, 19) +
        ' UTC',
    ])
      .toString()
      .trim();

  it.skipIf(!oathtool)(
    'accepts codes oathtool makes (skipped when oathtool is not installed)',
    () => {
      expect(checkTotp({ secret: Secret.fromBase32(secret), code: codeAt(0), at })).toEqual({
        ok: true,
        step: totpStep(at),
      });
    },
  );

  it.skipIf(!oathtool)(
    'accepts one step either side and refuses two (skipped when oathtool is not installed)',
    () => {
      const check = (n: number) =>
        checkTotp({ secret: Secret.fromBase32(secret), code: codeAt(n), at });
      expect(check(-1)).toEqual({ ok: true, step: totpStep(at) - 1 });
      expect(check(1)).toEqual({ ok: true, step: totpStep(at) + 1 });
      expect(check(-2)).toEqual({ ok: false, reason: 'bad_code' });
      expect(check(2)).toEqual({ ok: false, reason: 'bad_code' });
    },
  );

  it.skipIf(!oathtool)(
    'refuses a code for the last used step or an earlier one (skipped when oathtool is not installed)',
    () => {
      const s = Secret.fromBase32(secret);
      const step = totpStep(at);
      expect(checkTotp({ secret: s, code: codeAt(0), at, lastStep: step })).toEqual({
        ok: false,
        reason: 'replayed',
      });
      expect(checkTotp({ secret: s, code: codeAt(-1), at, lastStep: step })).toEqual({
        ok: false,
        reason: 'replayed',
      });
      expect(checkTotp({ secret: s, code: codeAt(1), at, lastStep: step })).toEqual({
        ok: true,
        step: step + 1,
      });
    },
  );

  it('refuses codes of the wrong length or with other characters', () => {
    const s = Secret.fromBase32(secret);
    for (const code of ['', '12345', '1234567', 'abcdef', "' OR 1=1 --"]) {
      expect(checkTotp({ secret: s, code, at })).toEqual({ ok: false, reason: 'bad_code' });
    }
  });
});

describe('secrets and recovery codes', () => {
  it('makes 160-bit secrets and an otpauth URI apps read', () => {
    const secret = newTotpSecret();
    expect(Secret.fromBase32(secret).bytes).toHaveLength(20);
    expect(newTotpSecret()).not.toBe(secret);
    const uri = new URL(totpUri(secret, 'ann@example.com'));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.searchParams.get('secret')).toBe(secret);
    expect(uri.searchParams.get('issuer')).toBe('Custos');
    expect(uri.searchParams.get('digits')).toBe('6');
    expect(uri.searchParams.get('period')).toBe('30');
    expect(uri.searchParams.get('algorithm')).toBe('SHA1');
  });

  it('makes ten distinct 80-bit recovery codes whose hash ignores case and dashes', () => {
    const codes = newRecoveryCodes();
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    for (const c of codes) expect(c).toMatch(/^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$/);
    const code = codes[0] ?? '';
    expect(hashRecoveryCode('u1', code.toLowerCase().replaceAll('-', ' '))).toBe(
      hashRecoveryCode('u1', code),
    );
    expect(hashRecoveryCode('u2', code)).not.toBe(hashRecoveryCode('u1', code));
  });
});
