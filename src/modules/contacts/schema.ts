import { Type } from '@sinclair/typebox';
import { DateOnly, Email, Nullable, Text } from '../../http/schemas.ts';

const Uuid = Type.String({ format: 'uuid' });

export const ContactFields = {
  firstName: Nullable(Text(200)),
  lastName: Nullable(Text(200)),
  email: Nullable(Email),
  phone: Nullable(Text(64)),
  title: Nullable(Text(200)),
  companyId: Nullable(Uuid),
  dateOfBirth: Nullable(DateOnly),
  nationalId: Nullable(Text(64)),
  address: Nullable(Text(1000)),
  notes: Nullable(Text(20_000)),
};

export const ContactItem = Type.Object(ContactFields);

export const ContactCreate = Type.Object(
  {
    ...Object.fromEntries(Object.entries(ContactFields).map(([k, v]) => [k, Type.Optional(v)])),
    ownerId: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);

export const ContactFilters = {
  email: Type.Optional(
    Type.String({ maxLength: 254, description: 'Exact e-mail (case-insensitive)' }),
  ),
  phone: Type.Optional(
    Type.String({ maxLength: 64, description: 'Exact phone number (any format)' }),
  ),
  companyId: Type.Optional(Uuid),
  ownerId: Type.Optional(Uuid),
};
