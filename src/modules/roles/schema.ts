import { Type, type TSchema } from '@sinclair/typebox';
import { capabilities, recordActions, recordResources, scopes } from '../../core/policy/index.ts';
import { RoleSchema } from '../../http/schemas.ts';

const literals = (values: readonly string[]) => Type.Union(values.map((v) => Type.Literal(v)));
const closed = (properties: Record<string, TSchema>) =>
  Type.Object(
    Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, Type.Optional(v)])),
    { additionalProperties: false },
  );

export const Scope = literals(scopes);
const FieldGrant = Type.Object(
  { read: literals(['full', 'masked', 'none']), write: Type.Boolean() },
  { additionalProperties: false },
);
const Actions = closed(Object.fromEntries(recordActions.map((a) => [a, Scope])));

/** A custom role as the API takes it (CustomRoleSpec). */
export const RoleSpec = Type.Object(
  {
    base: Type.Optional(RoleSchema),
    records: Type.Optional(closed(Object.fromEntries(recordResources.map((r) => [r, Actions])))),
    classes: Type.Optional(
      closed({
        public: FieldGrant,
        internal: FieldGrant,
        personal: FieldGrant,
        sensitive: FieldGrant,
      }),
    ),
    fields: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^(contact|company|deal|activity)\\.[A-Za-z]{1,64}$' }),
        FieldGrant,
        {
          maxProperties: 100,
        },
      ),
    ),
    reveal: Type.Optional(Type.Boolean()),
    assignOwner: Type.Optional(Type.Boolean()),
    capabilities: Type.Optional(
      closed(Object.fromEntries(capabilities.map((c) => [c, literals(['read', 'manage'])]))),
    ),
  },
  {
    additionalProperties: false,
    description: 'A base built-in role with changes laid over it, or explicit grants (no base).',
  },
);

const Definition = Type.Object({
  records: Type.Record(Type.String(), Type.Record(Type.String(), Scope)),
  classes: Type.Record(Type.String(), FieldGrant),
  fields: Type.Record(Type.String(), FieldGrant),
  reveal: Type.Boolean(),
  assignOwner: Type.Boolean(),
  capabilities: Type.Record(Type.String(), literals(['read', 'manage'])),
});

export const RoleView = Type.Object(
  {
    id: Type.String({ description: 'A UUID, or the name of a built-in role' }),
    name: Type.String(),
    builtin: Type.Boolean(),
    description: Type.Union([Type.String(), Type.Null()]),
    spec: Type.Union([RoleSpec, Type.Null()]),
    definition: Definition,
    version: Type.Integer(),
  },
  { $id: 'Role', title: 'Role' },
);
