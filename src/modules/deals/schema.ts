import { Type } from '@sinclair/typebox';
import { DateOnly, Nullable, Text } from '../../http/schemas.ts';

const Uuid = Type.String({ format: 'uuid' });

export const DEAL_STAGES = ['lead', 'qualified', 'proposal', 'negotiation', 'won', 'lost'] as const;
const Stage = Type.Union(DEAL_STAGES.map((s) => Type.Literal(s)));
const Currency = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code' });
const Amount = Type.Integer({
  minimum: 0,
  maximum: Number.MAX_SAFE_INTEGER,
  description: 'In minor units of the currency (cents)',
});

export const DealItem = Type.Object({
  name: Text(300, { minLength: 1 }),
  stage: Stage,
  amountMinor: Nullable(Amount),
  currency: Nullable(Currency),
  expectedCloseDate: Nullable(DateOnly),
  companyId: Nullable(Uuid),
  contactId: Nullable(Uuid),
});

export const DealCreate = Type.Object(
  {
    name: Text(300, { minLength: 1 }),
    stage: Type.Optional(Stage),
    amountMinor: Type.Optional(Nullable(Amount)),
    currency: Type.Optional(Nullable(Currency)),
    expectedCloseDate: Type.Optional(Nullable(DateOnly)),
    companyId: Type.Optional(Nullable(Uuid)),
    contactId: Type.Optional(Nullable(Uuid)),
    ownerId: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);

export const DealFilters = {
  stage: Type.Optional(Stage),
  companyId: Type.Optional(Uuid),
  contactId: Type.Optional(Uuid),
  ownerId: Type.Optional(Uuid),
};
