import { Type } from '@sinclair/typebox';
import { Nullable, Text, Timestamp } from '../../http/schemas.ts';

const Uuid = Type.String({ format: 'uuid' });

export const ACTIVITY_TYPES = ['call', 'email', 'meeting', 'note', 'task'] as const;
const ActivityType = Type.Union(ACTIVITY_TYPES.map((t) => Type.Literal(t)));

export const ActivityItem = Type.Object({
  type: ActivityType,
  subject: Text(500, { minLength: 1 }),
  body: Nullable(Text(50_000)),
  contactId: Nullable(Uuid),
  companyId: Nullable(Uuid),
  dealId: Nullable(Uuid),
  dueAt: Nullable(Timestamp),
  doneAt: Nullable(Timestamp),
});

export const ActivityCreate = Type.Object(
  {
    type: ActivityType,
    subject: Text(500, { minLength: 1 }),
    body: Type.Optional(Nullable(Text(50_000))),
    contactId: Type.Optional(Nullable(Uuid)),
    companyId: Type.Optional(Nullable(Uuid)),
    dealId: Type.Optional(Nullable(Uuid)),
    dueAt: Type.Optional(Nullable(Timestamp)),
    doneAt: Type.Optional(Nullable(Timestamp)),
    ownerId: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);

export const ActivityFilters = {
  type: Type.Optional(ActivityType),
  contactId: Type.Optional(Uuid),
  companyId: Type.Optional(Uuid),
  dealId: Type.Optional(Uuid),
  ownerId: Type.Optional(Uuid),
};
