import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { actorOf, requestMeta, SESSION_COOKIE } from '../../http/auth.ts';
import { problemResponses, RoleSchema, Text } from '../../http/schemas.ts';
import { createTurnGate } from '../../http/turns.ts';
import { csrfTokenFor } from '../identity/tokens.ts';
import {
  AuthenticationCredential,
  RequestOptions,
  toAuthenticationResponse,
} from '../passkeys/schema.ts';
import type { AuthService, LoginResult } from './service.ts';

const LoginBody = Type.Object(
  {
    tenant: Type.String({ minLength: 1, maxLength: 63 }),
    email: Text(254, { minLength: 1 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

export const SessionInfo = Type.Object({
  user: Type.Object({
    id: Type.String(),
    email: Type.String(),
    name: Type.String(),
    role: RoleSchema,
  }),
  csrfToken: Type.String({ description: 'Send as X-CSRF-Token on cookie-authenticated writes' }),
  expiresAt: Type.String({ format: 'date-time' }),
  mfaEnrolmentRequired: Type.Optional(
    Type.Literal(true, {
      description:
        'The tenant requires a second factor and you have none: enrol first ' +
        '(POST /api/v1/auth/mfa/totp); everything else answers 403 auth.mfa_enrolment_required',
    }),
  ),
});

const MfaRequired = Type.Object({
  mfaRequired: Type.Literal(true),
  mfaToken: Type.String({ description: 'Send to POST /api/v1/auth/login/mfa; single use' }),
  expiresAt: Type.String({ format: 'date-time' }),
});

const LoginMfaBody = Type.Union([
  Type.Object(
    {
      mfaToken: Type.String({ minLength: 1, maxLength: 128 }),
      code: Type.String({ pattern: '^[0-9 ]{6,8}$' }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      mfaToken: Type.String({ minLength: 1, maxLength: 128 }),
      recoveryCode: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9 -]+$' }),
    },
    { additionalProperties: false },
  ),
]);

const StepUpBody = Type.Union([
  Type.Object(
    { password: Type.String({ minLength: 1, maxLength: 1024 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { code: Type.String({ pattern: '^[0-9 ]{6,8}$', description: 'Required when TOTP is on' }) },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      recoveryCode: Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: '^[A-Za-z0-9 -]+$',
        description: 'With TOTP on, instead of a code: an unused recovery code, spent here',
      }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      // An assertion by one of your passkeys, answering POST /api/v1/auth/step-up/passkey-options.
      passkey: AuthenticationCredential,
    },
    { additionalProperties: false },
  ),
]);

const StepUpResult = Type.Object({
  csrfToken: Type.String({ description: 'The session has a new token (cookie): its CSRF token' }),
  expiresAt: Type.String({ format: 'date-time' }),
  authenticatedAt: Type.String({ format: 'date-time' }),
  freshUntil: Type.String({
    format: 'date-time',
    description: 'Sensitive actions work without another step-up until then',
  }),
});

const Me = Type.Object({
  id: Type.String(),
  email: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  effectiveRole: RoleSchema,
  tenant: Type.String(),
  via: Type.Union([Type.Literal('user'), Type.Literal('api_key'), Type.Literal('system')]),
});

/** Sets the session cookie; returns the CSRF token that goes with it. */
export function setSessionCookie(
  reply: FastifyReply,
  session: { token: string; expiresAt: string },
): string {
  void reply.setCookie(SESSION_COOKIE, session.token, {
    path: '/',
    httpOnly: true,
    secure: true,
    sameSite: 'lax',
    expires: new Date(session.expiresAt),
  });
  return csrfTokenFor(session.token);
}

/** Sets the session cookie of a new sign-in and answers with `SessionInfo`. */
export function sessionStarted(reply: FastifyReply, result: LoginResult) {
  return {
    user: result.user,
    csrfToken: setSessionCookie(reply, result),
    expiresAt: result.expiresAt,
    ...(result.mfaEnrolmentRequired ? { mfaEnrolmentRequired: true as const } : {}),
  };
}

export function registerAuthRoutes(app: FastifyInstance, auth: AuthService) {
  // A storm of sign-ins arriving together starts one per event-loop turn (see turns.ts).
  const signIns = createTurnGate();
  app.post(
    '/api/v1/auth/login',
    {
      config: { public: true },
      schema: {
        tags: ['Auth'],
        summary: 'Sign in; sets the session cookie, or asks for the second factor',
        body: LoginBody,
        response: { 200: Type.Union([SessionInfo, MfaRequired]), ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as { tenant: string; email: string; password: string };
      await signIns.wait();
      const result = await auth.login(body, requestMeta(request));
      if (result.mfaRequired) {
        return { mfaRequired: true, mfaToken: result.mfaToken, expiresAt: result.expiresAt };
      }
      return sessionStarted(reply, result);
    },
  );

  app.post(
    '/api/v1/auth/login/mfa',
    {
      config: { public: true },
      schema: {
        tags: ['Auth'],
        summary: 'Complete a sign-in with a TOTP code or a recovery code; sets the session cookie',
        body: LoginMfaBody,
        response: { 200: SessionInfo, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as Static<typeof LoginMfaBody>;
      const result = await auth.completeMfaLogin(body, requestMeta(request));
      return sessionStarted(reply, result);
    },
  );

  app.post(
    '/api/v1/auth/step-up',
    {
      config: { mfaEnrolment: true },
      schema: {
        tags: ['Auth'],
        summary:
          'Re-authenticate the current session for sensitive actions (password; with a second factor on, a code, a recovery code or a passkey); gives the session a new token (cookie)',
        body: StepUpBody,
        response: { 200: StepUpResult, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as Static<typeof StepUpBody>;
      const proof = 'passkey' in body ? { passkey: toAuthenticationResponse(body.passkey) } : body;
      const result = await auth.stepUp(actorOf(request), proof);
      return {
        csrfToken: setSessionCookie(reply, result.session),
        expiresAt: result.session.expiresAt,
        authenticatedAt: result.authenticatedAt,
        freshUntil: result.freshUntil,
      };
    },
  );

  app.post(
    '/api/v1/auth/step-up/passkey-options',
    {
      config: { mfaEnrolment: true },
      schema: {
        tags: ['Auth'],
        summary: 'Options for a step-up with one of your passkeys (a challenge for this session)',
        response: { 200: RequestOptions, ...problemResponses },
      },
    },
    async (request) => auth.stepUpPasskeyOptions(actorOf(request)),
  );

  app.post(
    '/api/v1/auth/logout',
    {
      config: { mfaEnrolment: true },
      schema: {
        tags: ['Auth'],
        summary: 'End the current session',
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      const actor = actorOf(request);
      if (actor.kind === 'user') await auth.logout(actor);
      void reply.clearCookie(SESSION_COOKIE, {
        path: '/',
        httpOnly: true,
        secure: true,
        sameSite: 'lax',
      });
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/auth/me',
    {
      config: { mfaEnrolment: true },
      schema: { tags: ['Auth'], summary: 'Who am I', response: { 200: Me, ...problemResponses } },
    },
    async (request) => auth.me(actorOf(request)),
  );
}
