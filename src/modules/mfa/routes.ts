import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../../clock.ts';
import { requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import { actorOf } from '../../http/auth.ts';
import { problemResponses } from '../../http/schemas.ts';
import { setSessionCookie } from '../auth/routes.ts';
import type { MfaService } from './service.ts';

const Code = Type.String({ pattern: '^[0-9 ]{6,8}$', description: 'The current 6-digit code' });

const Enrolment = Type.Object({
  uri: Type.String({ description: 'otpauth://totp/... for authenticator apps' }),
  qrCode: Type.String({ description: 'The URI as a PNG QR code, as a data: URL' }),
  secret: Type.String({ description: 'Base32 secret for manual entry; never shown again' }),
});

const RecoveryCodes = Type.Object({
  recoveryCodes: Type.Array(Type.String(), {
    description: 'Single-use codes for when the device is lost; shown only now',
  }),
});

const Confirmed = Type.Object({
  recoveryCodes: RecoveryCodes.properties.recoveryCodes,
  csrfToken: Type.Optional(
    Type.String({
      description:
        'Present when the session was held to enrolment: it now has full access under a new ' +
        'session cookie, with this new CSRF token',
    }),
  ),
});

const RemoveBody = Type.Union([
  Type.Object({ code: Code }, { additionalProperties: false }),
  Type.Object(
    { password: Type.String({ minLength: 1, maxLength: 1024 }) },
    { additionalProperties: false },
  ),
]);

/**
 * Enrolling, confirming and removing TOTP all need a fresh authentication; checked here rather
 * than in the service, whose three use cases would each need it before anything else.
 */
export function registerMfaRoutes(app: FastifyInstance, mfa: MfaService, clock: Clock) {
  const fresh = (actor: Actor): Actor => {
    requireFreshAuth(actor, clock);
    return actor;
  };

  app.post(
    '/api/v1/auth/mfa/totp',
    {
      config: { mfaEnrolment: true },
      schema: {
        tags: ['Auth'],
        summary: 'Start TOTP enrolment (restarts a pending one)',
        response: { 200: Enrolment, ...problemResponses },
      },
    },
    async (request) => mfa.enrolTotp(fresh(actorOf(request))),
  );

  app.post(
    '/api/v1/auth/mfa/totp/confirm',
    {
      config: { mfaEnrolment: true },
      schema: {
        tags: ['Auth'],
        summary: 'Turn TOTP on with a first code; returns the recovery codes once',
        body: Type.Object({ code: Code }, { additionalProperties: false }),
        response: { 200: Confirmed, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as { code: string };
      const result = await mfa.confirmTotp(fresh(actorOf(request)), body.code);
      if (!result.session) return { recoveryCodes: result.recoveryCodes };
      return {
        recoveryCodes: result.recoveryCodes,
        csrfToken: setSessionCookie(reply, result.session),
      };
    },
  );

  app.post(
    '/api/v1/auth/mfa/recovery-codes',
    {
      schema: {
        tags: ['Auth'],
        summary: 'Replace all recovery codes with new ones (shown once); needs a fresh sign-in',
        response: { 200: RecoveryCodes, ...problemResponses },
      },
    },
    async (request) => mfa.regenerateRecoveryCodes(actorOf(request)),
  );

  app.delete(
    '/api/v1/auth/mfa/totp',
    {
      schema: {
        tags: ['Auth'],
        summary: 'Turn TOTP off, with a current code or the password',
        body: RemoveBody,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await mfa.removeTotp(fresh(actorOf(request)), request.body as Static<typeof RemoveBody>);
      return reply.code(204).send();
    },
  );
}
