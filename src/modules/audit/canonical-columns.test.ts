import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../core/audit/index.ts';
import { canonicalTextOfColumns, columnsSpellCanonical } from './canonical-columns.ts';
import { bodyFromRow, eventBody, type AuditEventInput } from './event.ts';
import type { EventTuple } from './verify-source.ts';

const TENANT = '0190a1b2-c3d4-7e5f-8a9b-00000000000a';
const decoder = new TextDecoder();

/** A stored row as the append path writes it: columns and the canonical text of its body. */
function stored(input: Partial<AuditEventInput>, leafIndex = 7): EventTuple {
  const body = eventBody(
    {
      tenantId: TENANT,
      type: 'record.updated',
      actor: { kind: 'user', id: 'u1' },
      request: { ip: '203.0.113.7', userAgent: 'agent', requestId: 'r1' },
      target: { type: 'contact', id: 'c1' },
      fields: ['email', 'phone'],
      ...input,
    },
    { leafIndex, id: 'e1', occurredAt: '2026-01-02T03:04:05.678Z' },
  );
  const canonical = decoder.decode(canonicalBytes(body));
  return [
    leafIndex,
    canonical,
    'hash',
    body.id,
    body.type,
    body.occurredAt,
    body.actor.kind,
    body.actor.id,
    body.ip,
    body.userAgent,
    body.requestId,
    body.target?.type ?? null,
    body.target?.id ?? null,
    body.outcome,
    body.reason,
    JSON.stringify(body.fields),
    body.breakGlassId ?? null,
  ];
}

/** What the general path accepts: the columns' body canonicalises to exactly the stored text. */
function generalAccepts(row: EventTuple): boolean {
  const body = bodyFromRow({
    tenant_id: TENANT,
    leaf_index: row[0],
    canonical: row[1],
    leaf_hash: row[2],
    id: row[3],
    type: row[4],
    occurred_at: row[5],
    actor_kind: row[6],
    actor_id: row[7],
    ip: row[8],
    user_agent: row[9],
    request_id: row[10],
    target_type: row[11],
    target_id: row[12],
    outcome: row[13],
    reason: row[14],
    fields: row[15],
    break_glass_id: row[16],
  });
  try {
    return decoder.decode(canonicalBytes(body)) === row[1];
  } catch {
    return false;
  }
}

const ROWS: Record<string, EventTuple> = {
  plain: stored({}),
  'no target, a reason': stored({ target: null, type: 'auth.login_succeeded', reason: 'bulk' }),
  'no actor id, no request': stored({ actor: { kind: 'anonymous', id: null }, request: {} }),
  'break-glass': stored({ breakGlassId: 'g1' }),
  'no fields': stored({ fields: [] }),
  'not ASCII': stored({ request: { userAgent: 'é 中文 ü', ip: null, requestId: null } }),
  'leaf 0': stored({}, 0),
  'a large leaf index': stored({}, 2 ** 40 + 3),
};

// Values a column can be changed to: other text, text that needs escaping, surrogates (paired
// and lone), null, and values that are not strings (a BLOB, a number).
const VALUES: unknown[] = [
  'x',
  '',
  'u1 ',
  'a"b',
  'a\\b',
  'a\nb',
  'a\u0001b',
  'a\u007fb',
  '😀',
  '\ud800',
  'null',
  '"u1"',
  null,
  Buffer.from('u1'),
  5,
];

describe('columnsSpellCanonical', () => {
  it.each(Object.entries(ROWS))('accepts the row the append path wrote (%s)', (_, row) => {
    expect(columnsSpellCanonical(TENANT, row)).toBe(true);
    expect(generalAccepts(row)).toBe(true);
  });

  it('accepts only what the general path accepts, whatever one column is changed to', () => {
    const accepted: unknown[] = [];
    let checked = 0;
    for (const row of Object.values(ROWS)) {
      for (let column = 0; column < row.length; column++) {
        if (column === 2) continue; // the leaf hash is verifyLog's to check
        for (const value of [...VALUES, `${String(row[column])}x`]) {
          if (value === row[column]) continue;
          const changed = [...row] as unknown as EventTuple;
          (changed as unknown[])[column] = value;
          const fast = columnsSpellCanonical(TENANT, changed);
          checked++;
          if (!fast) continue;
          accepted.push([column, value]);
          expect([column, value, generalAccepts(changed)]).toEqual([column, value, true]);
          expect(changed[1]).toBe(canonicalTextOfColumns(TENANT, changed));
        }
      }
    }
    expect(checked).toBeGreaterThan(1500);
    // Only leaf index 0 read back as '' or null passes: Number() makes both 0, here as in the
    // general path (the column is NOT NULL and part of the primary key).
    expect(accepted).toEqual([
      [0, ''],
      [0, null],
    ]);
  });

  it('rejects a value spelled into the text as is where RFC 8785 escapes or refuses it', () => {
    const row = ROWS.plain!;
    // Column and text changed together, the value written between quotes without escaping.
    const columns: [number, string][] = [
      [3, '"e1"'],
      [9, '"agent"'],
      [14, 'null'],
      [12, '"c1"'],
    ];
    for (const [column, spelled] of columns) {
      for (const value of ['a"b', 'a\\b', 'a\\"', 'a\nb', 'a\u0001b', '\ud800', '\udc00x']) {
        const changed = [...row] as unknown as EventTuple;
        (changed as unknown[])[column] = value;
        changed[1] = row[1].replace(`:${spelled}`, `:"${value}"`);
        expect(changed[1]).not.toBe(row[1]);
        expect([column, value, columnsSpellCanonical(TENANT, changed)]).toEqual([
          column,
          value,
          false,
        ]);
        expect(generalAccepts(changed)).toBe(false);
      }
    }
  });

  it('rejects stored text that is not the canonical form of the columns', () => {
    const row = ROWS.plain!;
    const text = row[1];
    for (const changed of [
      text.replace('{"actor"', '{ "actor"'), // whitespace
      text.replace('"v":1}', '"v":1} '),
      text.replace('"v":1}', '"v":1'),
      `${text}x`,
      text.slice(0, -1),
      text.replace('"ip":"203.0.113.7"', '"ip":"203.0.113.\\u0037"'), // an unneeded escape
      text.replace(',"kind":"user"', ',"kind":"user","kind":"user"'),
      text.replace('"leafIndex":7', '"leafIndex":7.0'),
      text.replace('"leafIndex":7', '"leafIndex":07'),
      text.replace('"v":1', '"v":2'),
      text.replace('"tenantId":"', '"tenantId":"x'),
    ]) {
      expect(changed).not.toBe(text);
      const tuple = [...row] as unknown as EventTuple;
      tuple[1] = changed;
      expect(columnsSpellCanonical(TENANT, tuple)).toBe(false);
      expect(generalAccepts(tuple)).toBe(false);
    }
    expect(columnsSpellCanonical('another-tenant', row)).toBe(false);
  });

  it('leaves values that need escaping to canonicalTextOfColumns', () => {
    const row = stored({
      request: { userAgent: 'Agent "quoted" \\ back\nslash\u0001 😀', requestId: 'r "1"' },
    });
    expect(columnsSpellCanonical(TENANT, row)).toBe(false);
    expect(generalAccepts(row)).toBe(true);
    const fields = stored({ fields: ['a'] });
    fields[15] = '[ "a" ]'; // the same array, not in canonical form
    expect(columnsSpellCanonical(TENANT, fields)).toBe(false);
  });
});

describe('canonicalTextOfColumns as the append path writes the canonical text', () => {
  const url = new URL('../../../test/fixtures/blns/blns.from-txt.json', import.meta.url);
  const naughty = JSON.parse(fs.readFileSync(url, 'utf8')) as string[];
  // Lone surrogates too: RFC 8785 refuses them, so the writer must leave them to the general path.
  const strings = [...naughty, '\ud800', 'x\udc00', '😀 \u2028 \u0000 "\\'];

  it('writes the RFC 8785 text of the body, or leaves the event to the general canonicaliser', () => {
    let written = 0;
    for (const s of strings) {
      for (const input of [
        { request: { userAgent: s, ip: s, requestId: s } },
        { actor: { kind: 'user' as const, id: s }, reason: s, breakGlassId: s || undefined },
        { target: { type: 'contact', id: s } },
      ]) {
        const body = eventBody(
          {
            tenantId: TENANT,
            type: 'record.read',
            actor: { kind: 'system', id: null },
            fields: ['email'],
            ...input,
          },
          { leafIndex: 3, id: s, occurredAt: s },
        );
        // The columns as appendIn builds them from the body.
        const columns: EventTuple = [
          3,
          '',
          '',
          body.id,
          body.type,
          body.occurredAt,
          body.actor.kind,
          body.actor.id,
          body.ip,
          body.userAgent,
          body.requestId,
          body.target?.type ?? null,
          body.target?.id ?? null,
          body.outcome,
          body.reason,
          JSON.stringify(body.fields),
          body.breakGlassId ?? null,
        ];
        const direct = canonicalTextOfColumns(TENANT, columns);
        let general: string | undefined;
        try {
          general = decoder.decode(canonicalBytes(body));
        } catch {
          general = undefined; // refused (a lone surrogate): the append fails the same way
        }
        if (direct === undefined) continue;
        written++;
        expect([s, direct]).toEqual([s, general]);
      }
    }
    // Almost every event takes the direct writer; only surrogates go the general way.
    expect(written).toBeGreaterThan(strings.length * 3 * 0.9);
  });
});
