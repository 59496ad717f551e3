import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { problemResponses, RoleSchema } from '../../http/schemas.ts';
import type { TenantSettingsPatch, TenantSettingsService } from './service.ts';

const IdleMinutes = Type.Integer({ minimum: 5, maximum: 1440 });
const AbsoluteHours = Type.Integer({ minimum: 1, maximum: 168 });

const MfaRequired = Type.Union([Type.Literal('off'), Type.Literal('all'), Type.Literal('roles')], {
  description:
    'Who must have a second factor: nobody, everyone, or the roles in mfaRequiredRoles. ' +
    'Users it covers who have none are held to enrolment at their next request.',
});
const MfaRoles = Type.Array(RoleSchema, { maxItems: 6, uniqueItems: true });

const PHONE_REGION_DESCRIPTION =
  'Region (ISO 3166-1 alpha-2, upper-case, one libphonenumber has numbering rules for: US, DE, GB, ...) ' +
  'that national phone numbers such as "(415) 555-2671" are read in, when contacts are indexed for ' +
  'the phone filter and when a phone filter value is read. null: only international numbers ' +
  '("+1 415 555 2671") are indexed. Changing it re-indexes every contact\'s phone at once. Numbers ' +
  'that still do not parse are stored (encrypted) but cannot be filtered on.';
const PhoneRegion = Type.String({ pattern: '^[A-Z]{2}$', examples: ['US', 'DE'] });

const Settings = Type.Object({
  sessionIdleMinutes: Type.Union([IdleMinutes, Type.Null()], {
    description: 'Minutes without a request after which a session ends; null: server default',
  }),
  sessionAbsoluteHours: Type.Union([AbsoluteHours, Type.Null()], {
    description: 'Hours after sign-in at which a session ends; null: server default',
  }),
  mfaRequired: MfaRequired,
  mfaRequiredRoles: Type.Array(RoleSchema, { description: 'With mfaRequired "roles"' }),
  phoneRegion: Type.Union([PhoneRegion, Type.Null()], { description: PHONE_REGION_DESCRIPTION }),
  defaults: Type.Object({
    sessionIdleMinutes: Type.Integer(),
    sessionAbsoluteHours: Type.Integer(),
  }),
});

export function registerTenantSettingsRoutes(
  app: FastifyInstance,
  settings: TenantSettingsService,
) {
  const tags = ['Tenant'];
  app.get(
    '/api/v1/tenant/settings',
    {
      schema: {
        tags,
        summary: "The tenant's settings (owners and admins)",
        response: { 200: Settings, ...problemResponses },
      },
    },
    async (request) => settings.get(actorOf(request)),
  );
  app.patch(
    '/api/v1/tenant/settings',
    {
      schema: {
        tags,
        summary:
          "Change the tenant's session timeouts, second-factor requirement (fresh sign-in) and phone region (owners and admins); null restores a default",
        body: Type.Object(
          {
            sessionIdleMinutes: Type.Optional(Type.Union([IdleMinutes, Type.Null()])),
            sessionAbsoluteHours: Type.Optional(Type.Union([AbsoluteHours, Type.Null()])),
            mfaRequired: Type.Optional(MfaRequired),
            mfaRequiredRoles: Type.Optional(MfaRoles),
            phoneRegion: Type.Optional(
              Type.Union([PhoneRegion, Type.Null()], { description: PHONE_REGION_DESCRIPTION }),
            ),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Settings, ...problemResponses },
      },
    },
    async (request) => settings.update(actorOf(request), request.body as TenantSettingsPatch),
  );
}
