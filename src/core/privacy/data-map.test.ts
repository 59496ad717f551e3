import { describe, expect, it } from 'vitest';
import { classificationOf, dataMap, fieldsClassified, isProtected } from './data-map.ts';

describe('data map', () => {
  it('classifies the contact fields that must never be stored in clear as protected', () => {
    for (const f of ['email', 'phone', 'dateOfBirth', 'nationalId', 'notes'] as const) {
      expect(isProtected('contact', f)).toBe(true);
    }
    expect(classificationOf('contact', 'nationalId')).toBe('sensitive');
    expect(isProtected('contact', 'title')).toBe(false);
  });

  it('lists protected fields per object from the map, not from call sites', () => {
    expect(fieldsClassified('activity', ['personal', 'sensitive']).sort()).toEqual([
      'body',
      'subject',
    ]);
  });

  it('gives every field one of the four classes', () => {
    const classes = new Set(['public', 'internal', 'personal', 'sensitive']);
    for (const fields of Object.values(dataMap)) {
      for (const c of Object.values(fields)) expect(classes.has(c)).toBe(true);
    }
  });
});
