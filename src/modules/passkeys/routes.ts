import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf, requestMeta } from '../../http/auth.ts';
import { IdParams, problemResponses } from '../../http/schemas.ts';
import { SessionInfo, sessionStarted, setSessionCookie } from '../auth/routes.ts';
import type { AuthService } from '../auth/service.ts';
import {
  CreationOptions,
  PasskeyItem,
  PasswordlessBody,
  PasswordlessOptionsBody,
  RegistrationBody,
  RenameBody,
  RequestOptions,
  SecondFactorBody,
  SecondFactorOptionsBody,
  toAuthenticationResponse,
  toRegistrationResponse,
} from './schema.ts';
import type { PasskeyService } from './service.ts';
import type { PasskeySignIn } from './sign-in.ts';

const tags = ['Passkeys'];

const RegisteredPasskey = Type.Composite([
  PasskeyItem,
  Type.Object({
    csrfToken: Type.Optional(
      Type.String({
        description:
          'Present when the session was held to enrolment: it now has full access under a new ' +
          'session cookie, with this new CSRF token',
      }),
    ),
  }),
]);
const base = '/api/v1/auth/passkeys';

export function registerPasskeyRoutes(
  app: FastifyInstance,
  deps: { passkeys: PasskeyService; signIn: PasskeySignIn; auth: AuthService },
) {
  const { passkeys, signIn, auth } = deps;

  app.post(
    `${base}/registration/options`,
    {
      // Reachable while a tenant's MFA rule holds the session until a second factor is enrolled.
      config: { mfaEnrolment: true },
      schema: {
        tags,
        summary: 'Start registering a passkey (needs a fresh sign-in or step-up)',
        response: { 200: CreationOptions, ...problemResponses },
      },
    },
    async (request) => passkeys.registrationStart(actorOf(request)),
  );

  app.post(
    `${base}/registration`,
    {
      // Reachable while a tenant's MFA rule holds the session until a second factor is enrolled.
      config: { mfaEnrolment: true },
      schema: {
        tags,
        summary: 'Finish registering a passkey with the authenticator’s response',
        body: RegistrationBody,
        response: { 201: RegisteredPasskey, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as Static<typeof RegistrationBody>;
      const result = await passkeys.registrationFinish(actorOf(request), {
        credential: toRegistrationResponse(body.credential),
        name: body.name,
      });
      if (!result.session) return reply.code(201).send(result.passkey);
      const csrfToken = setSessionCookie(reply, result.session);
      return reply.code(201).send({ ...result.passkey, csrfToken });
    },
  );

  app.get(
    base,
    {
      // Reachable while a tenant's MFA rule holds the session until a second factor is enrolled.
      config: { mfaEnrolment: true },
      schema: {
        tags,
        summary: "The caller's own passkeys",
        response: { 200: Type.Object({ items: Type.Array(PasskeyItem) }), ...problemResponses },
      },
    },
    async (request) => ({ items: await passkeys.list(actorOf(request)) }),
  );

  app.patch(
    `${base}/:id`,
    {
      schema: {
        tags,
        summary: 'Rename one of your passkeys',
        params: IdParams,
        body: RenameBody,
        response: { 200: PasskeyItem, ...problemResponses },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const { name } = request.body as Static<typeof RenameBody>;
      return passkeys.rename(actorOf(request), id, name);
    },
  );

  app.delete(
    `${base}/:id`,
    {
      schema: {
        tags,
        summary: 'Remove one of your passkeys (needs a fresh sign-in or step-up)',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      await passkeys.remove(actorOf(request), id);
      return reply.code(204).send();
    },
  );

  app.post(
    `${base}/login/options`,
    {
      config: { public: true },
      schema: {
        tags,
        summary: 'Start a passwordless sign-in in a tenant',
        body: PasswordlessOptionsBody,
        response: { 200: RequestOptions, ...problemResponses },
      },
    },
    async (request) => signIn.passwordlessStart(request.body as { tenant: string }),
  );

  app.post(
    `${base}/login`,
    {
      config: { public: true },
      schema: {
        tags,
        summary: 'Sign in with a passkey alone; sets the session cookie',
        body: PasswordlessBody,
        response: { 200: SessionInfo, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as Static<typeof PasswordlessBody>;
      const result = await signIn.passwordlessFinish(
        { tenant: body.tenant, credential: toAuthenticationResponse(body.credential) },
        requestMeta(request),
      );
      return sessionStarted(reply, result);
    },
  );

  app.post(
    `${base}/login/mfa/options`,
    {
      config: { public: true },
      schema: {
        tags,
        summary: 'Options for completing a password sign-in with a passkey (the mfaToken)',
        body: SecondFactorOptionsBody,
        response: { 200: RequestOptions, ...problemResponses },
      },
    },
    async (request) => signIn.secondFactorStart(request.body as { mfaToken: string }),
  );

  app.post(
    `${base}/login/mfa`,
    {
      config: { public: true },
      schema: {
        tags,
        summary: 'Complete a password sign-in with a passkey; sets the session cookie',
        body: SecondFactorBody,
        response: { 200: SessionInfo, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as Static<typeof SecondFactorBody>;
      const result = await auth.completeMfaLogin(
        { mfaToken: body.mfaToken, passkey: toAuthenticationResponse(body.credential) },
        requestMeta(request),
      );
      return sessionStarted(reply, result);
    },
  );
}
