import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../core/audit/index.ts';
import { canonicalText } from './canonical-text.ts';
import { eventBody, type AuditEventBody, type AuditEventInput } from './event.ts';

const TENANT = '0190a1b2-c3d4-7e5f-8a9b-00000000000a';
const decoder = new TextDecoder();

/** An event body as the append path builds it. */
function body(input: Partial<AuditEventInput>, leafIndex = 7, id = 'e1'): AuditEventBody {
  return eventBody(
    {
      tenantId: TENANT,
      type: 'record.updated',
      actor: { kind: 'user', id: 'u1' },
      request: { ip: '203.0.113.7', userAgent: 'agent', requestId: 'r1' },
      target: { type: 'contact', id: 'c1' },
      fields: ['email', 'phone'],
      ...input,
    },
    { leafIndex, id, occurredAt: '2026-01-02T03:04:05.678Z' },
  );
}

/** The general canonicaliser's text, or undefined where it refuses the body. */
function general(b: AuditEventBody): string | undefined {
  try {
    return decoder.decode(canonicalBytes(b));
  } catch {
    return undefined;
  }
}

const BODIES: Record<string, AuditEventBody> = {
  plain: body({}),
  'no target, a reason': body({ target: null, type: 'auth.login_succeeded', reason: 'bulk' }),
  'no actor id, no request': body({ actor: { kind: 'anonymous', id: null }, request: {} }),
  'break-glass': body({ breakGlassId: 'g1' }),
  'no fields': body({ fields: [] }),
  'fields given out of order': body({ fields: ['phone', 'email', 'address'] }),
  'not ASCII': body({ request: { userAgent: 'é 中文 ü', ip: null, requestId: null } }),
  escaped: body({ request: { userAgent: 'Agent "q" \\ b\nc\u0001\u007f', requestId: 'r "1"' } }),
  'leaf 0': body({}, 0),
  'a large leaf index': body({}, 2 ** 40 + 3),
};

describe('canonicalText', () => {
  it.each(Object.entries(BODIES))('writes what the general canonicaliser writes (%s)', (_, b) => {
    const text = canonicalText(b);
    expect(text).toBeDefined();
    expect(text).toBe(general(b));
  });

  it('leaves to the general path what it does not write itself', () => {
    const lone = { ...BODIES.plain!, userAgent: 'x\ud800' };
    const paired = body({ request: { userAgent: '😀' } });
    const unsorted = { ...BODIES.plain!, fields: ['phone', 'email'] };
    const quoted = { ...BODIES.plain!, fields: ['a"b'] };
    const fractional = { ...BODIES.plain!, leafIndex: 1.5 };
    for (const b of [lone, paired, unsorted, quoted, fractional]) {
      expect(canonicalText(b)).toBeUndefined();
    }
    expect(general(paired)).toBeDefined(); // then written the general way
    expect(general(lone)).toBeUndefined(); // and refused
  });

  it('writes the RFC 8785 text of any event with naughty strings, or leaves it aside', () => {
    const url = new URL('../../../test/fixtures/blns/blns.from-txt.json', import.meta.url);
    const naughty = JSON.parse(fs.readFileSync(url, 'utf8')) as string[];
    const strings = [...naughty, '\ud800', 'x\udc00', '\u2028 \u0000 "\\'];
    let written = 0;
    for (const s of strings) {
      for (const input of [
        { request: { userAgent: s, ip: s, requestId: s } },
        { actor: { kind: 'user' as const, id: s }, reason: s, breakGlassId: s || undefined },
        { target: { type: 'contact', id: s } },
      ]) {
        const b = body(
          { type: 'record.read', actor: { kind: 'system', id: null }, ...input },
          3,
          s,
        );
        const direct = canonicalText(b);
        if (direct === undefined) continue;
        written++;
        expect([s, direct]).toEqual([s, general(b)]);
      }
    }
    // Almost every event takes the direct writer; only surrogates go the general way.
    expect(written).toBeGreaterThan(strings.length * 3 * 0.9);
  });
});
