/**
 * The data map: every field Custos stores, with its classification. The class, never the call
 * site, decides how a field is treated: encryption at rest (`personal`, `sensitive`), masking,
 * read auditing, redaction from logs, export and retention.
 *
 * - `public`: may be shown to anyone in the tenant and outside it (e.g. a company's web domain).
 * - `internal`: business data without a person behind it (deal stage, ids, timestamps).
 * - `personal`: identifies or concerns a natural person (GDPR Art. 4(1)).
 * - `sensitive`: special category or high-risk personal data (health/PHI, national id, date of
 *   birth, payment card; free text that may hold them).
 *
 * @example
 * ```ts
 * classificationOf('contact', 'email'); // 'personal'
 * isProtected('contact', 'nationalId'); // true
 * ```
 */
export type Classification = 'public' | 'internal' | 'personal' | 'sensitive';

export const dataMap = {
  user: {
    id: 'internal',
    email: 'personal',
    name: 'personal',
    role: 'internal',
    status: 'internal',
    password: 'sensitive',
    createdAt: 'internal',
    updatedAt: 'internal',
  },
  company: {
    id: 'internal',
    name: 'internal',
    domain: 'public',
    industry: 'internal',
    phone: 'internal',
    address: 'internal',
    ownerId: 'internal',
    createdAt: 'internal',
    updatedAt: 'internal',
  },
  contact: {
    id: 'internal',
    firstName: 'personal',
    lastName: 'personal',
    email: 'personal',
    phone: 'personal',
    title: 'internal',
    companyId: 'internal',
    dateOfBirth: 'sensitive',
    nationalId: 'sensitive',
    address: 'personal',
    notes: 'sensitive',
    ownerId: 'internal',
    createdAt: 'internal',
    updatedAt: 'internal',
  },
  deal: {
    id: 'internal',
    name: 'internal',
    stage: 'internal',
    amountMinor: 'internal',
    currency: 'internal',
    expectedCloseDate: 'internal',
    companyId: 'internal',
    contactId: 'internal',
    ownerId: 'internal',
    createdAt: 'internal',
    updatedAt: 'internal',
  },
  activity: {
    id: 'internal',
    type: 'internal',
    subject: 'personal',
    body: 'sensitive',
    contactId: 'internal',
    companyId: 'internal',
    dealId: 'internal',
    dueAt: 'internal',
    doneAt: 'internal',
    ownerId: 'internal',
    createdAt: 'internal',
    updatedAt: 'internal',
  },
} as const satisfies Record<string, Record<string, Classification>>;

export type DataObject = keyof typeof dataMap;
export type FieldOf<O extends DataObject> = keyof (typeof dataMap)[O] & string;

export function classificationOf<O extends DataObject>(
  object: O,
  field: FieldOf<O>,
): Classification {
  return (dataMap[object] as Record<string, Classification>)[field] as Classification;
}

/** Personal and sensitive fields: encrypted at rest, redacted from logs, masked by policy. */
export function isProtected<O extends DataObject>(object: O, field: FieldOf<O>): boolean {
  const c = classificationOf(object, field);
  return c === 'personal' || c === 'sensitive';
}

/** Field names of an object with the given classes. */
export function fieldsClassified<O extends DataObject>(
  object: O,
  classes: readonly Classification[],
): FieldOf<O>[] {
  return Object.entries(dataMap[object])
    .filter(([, c]) => classes.includes(c))
    .map(([f]) => f as FieldOf<O>);
}

/** Every protected field name across the map, plus credentials: the log redaction list. */
export function protectedFieldNames(): string[] {
  const names = new Set<string>();
  for (const object of Object.keys(dataMap) as DataObject[]) {
    for (const f of fieldsClassified(object, ['personal', 'sensitive'])) names.add(f);
  }
  return [...names].sort();
}
