import { Type } from '@sinclair/typebox';
import { Nullable, Text } from '../../http/schemas.ts';

const Uuid = Type.String({ format: 'uuid' });

export const CompanyItem = Type.Object({
  name: Text(300, { minLength: 1 }),
  domain: Nullable(Text(253)),
  industry: Nullable(Text(200)),
  phone: Nullable(Text(64)),
  address: Nullable(Text(1000)),
});

export const CompanyCreate = Type.Object(
  {
    name: Text(300, { minLength: 1 }),
    domain: Type.Optional(Nullable(Text(253))),
    industry: Type.Optional(Nullable(Text(200))),
    phone: Type.Optional(Nullable(Text(64))),
    address: Type.Optional(Nullable(Text(1000))),
    ownerId: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);

export const CompanyFilters = {
  domain: Type.Optional(Type.String({ maxLength: 253 })),
  ownerId: Type.Optional(Uuid),
};
