import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf, requestMeta, SESSION_COOKIE } from '../../http/auth.ts';
import { Email, problemResponses, Text } from '../../http/schemas.ts';
import { csrfTokenFor } from '../identity/tokens.ts';
import {
  AuthenticationCredential,
  RequestOptions,
  toAuthenticationResponse,
} from '../passkeys/schema.ts';
import type { AccountService } from './service.ts';

const Password = Type.String({ minLength: 1, maxLength: 1024 });
const LinkToken = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9_-]+$',
  description: 'The token of the mailed link',
});

const ResetRequest = Type.Object(
  {
    tenant: Type.String({ minLength: 1, maxLength: 63 }),
    email: Text(254, { minLength: 1 }),
  },
  { additionalProperties: false },
);

const ResetConfirm = Type.Object(
  {
    token: LinkToken,
    newPassword: Password,
    code: Type.Optional(
      Type.String({ pattern: '^[0-9 ]{6,8}$', description: 'Current TOTP code, when TOTP is on' }),
    ),
    recoveryCode: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: '^[A-Za-z0-9 -]+$',
        description: 'Or an unused recovery code',
      }),
    ),
    // Or an assertion by one of the account's passkeys, answering /password-reset/passkey-options.
    passkey: Type.Optional(AuthenticationCredential),
  },
  { additionalProperties: false },
);

const PasswordChange = Type.Object(
  { currentPassword: Password, newPassword: Password },
  { additionalProperties: false },
);

const EmailChange = Type.Object({ email: Email }, { additionalProperties: false });

export function registerAccountRoutes(app: FastifyInstance, account: AccountService) {
  app.post(
    '/api/v1/auth/password-reset',
    {
      config: { public: true },
      schema: {
        tags: ['Auth'],
        summary:
          'Ask for a password reset link by mail (the same answer whether or not the account exists)',
        body: ResetRequest,
        response: { 202: Type.Object({ accepted: Type.Literal(true) }), ...problemResponses },
      },
    },
    async (request, reply) => {
      await account.requestPasswordReset(
        request.body as Static<typeof ResetRequest>,
        requestMeta(request),
      );
      return reply.code(202).send({ accepted: true });
    },
  );

  app.post(
    '/api/v1/auth/password-reset/confirm',
    {
      config: { public: true },
      schema: {
        tags: ['Auth'],
        summary:
          'Set a new password with a reset link (and a second factor when on); ends every session',
        body: ResetConfirm,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      const { passkey, ...body } = request.body as Static<typeof ResetConfirm>;
      await account.confirmPasswordReset(
        { ...body, ...(passkey ? { passkey: toAuthenticationResponse(passkey) } : {}) },
        requestMeta(request),
      );
      return reply.code(204).send();
    },
  );

  app.post(
    '/api/v1/auth/password-reset/passkey-options',
    {
      config: { public: true },
      schema: {
        tags: ['Auth'],
        summary:
          'Options for confirming a password reset with a passkey, when that is the second factor',
        body: Type.Object({ token: LinkToken }, { additionalProperties: false }),
        response: { 200: RequestOptions, ...problemResponses },
      },
    },
    async (request) =>
      account.passwordResetPasskeyOptions(request.body as { token: string }, requestMeta(request)),
  );

  app.post(
    '/api/v1/auth/password',
    {
      schema: {
        tags: ['Auth'],
        summary:
          'Change your password; ends your other sessions and gives this one a new token (cookie)',
        body: PasswordChange,
        response: {
          200: Type.Object({
            csrfToken: Type.String({ description: 'The new CSRF token of this session' }),
            expiresAt: Type.String({ format: 'date-time' }),
            sessionsEnded: Type.Integer({ minimum: 0 }),
          }),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const result = await account.changePassword(
        actorOf(request),
        request.body as Static<typeof PasswordChange>,
      );
      void reply.setCookie(SESSION_COOKIE, result.token, {
        path: '/',
        httpOnly: true,
        secure: true,
        sameSite: 'lax',
        expires: new Date(result.expiresAt),
      });
      return {
        csrfToken: csrfTokenFor(result.token),
        expiresAt: result.expiresAt,
        sessionsEnded: result.sessionsEnded,
      };
    },
  );

  app.post(
    '/api/v1/auth/email',
    {
      schema: {
        tags: ['Auth'],
        summary:
          'Change your sign-in e-mail (needs a fresh authentication): mails a confirmation link to the new address',
        body: EmailChange,
        response: {
          202: Type.Object({ expiresAt: Type.String({ format: 'date-time' }) }),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const result = await account.requestEmailChange(
        actorOf(request),
        request.body as Static<typeof EmailChange>,
      );
      return reply.code(202).send(result);
    },
  );

  app.post(
    '/api/v1/auth/email/confirm',
    {
      config: { public: true },
      schema: {
        tags: ['Auth'],
        summary: 'Confirm a new sign-in e-mail with the mailed link',
        body: Type.Object({ token: LinkToken }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await account.confirmEmailChange(request.body as { token: string }, requestMeta(request));
      return reply.code(204).send();
    },
  );
}
