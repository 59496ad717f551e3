import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { Type, type Static, type TString } from '@sinclair/typebox';
import { Name, Nullable, Timestamp, Uuid } from '../../http/schemas.ts';

/** base64url without padding, as WebAuthn's JSON encodings send binary values. */
const B64 = (maxLength: number, description?: string): TString =>
  Type.String({
    minLength: 1,
    maxLength,
    pattern: '^[A-Za-z0-9_-]+$',
    ...(description ? { description } : {}),
  });

const Transport = Type.String({ maxLength: 32, pattern: '^[a-z-]+$' });

/** Extension outputs are not used; accepted (small) so browsers' `toJSON()` passes as is. */
const ExtensionResults = Type.Object({}, { additionalProperties: true, maxProperties: 16 });

/** Browsers' own `toJSON()` may send null where the value is unknown. */
const Attachment = Type.Union([
  Type.Literal('platform'),
  Type.Literal('cross-platform'),
  Type.Null(),
]);

/** A credential id is at most 1023 bytes (WebAuthn L3): 1364 base64url characters. */
const CredentialId = B64(1364);

/** `PublicKeyCredential.toJSON()` of `navigator.credentials.create()`. */
export const RegistrationCredential = Type.Object(
  {
    id: CredentialId,
    rawId: CredentialId,
    type: Type.Literal('public-key'),
    response: Type.Object(
      {
        clientDataJSON: B64(8192),
        attestationObject: B64(65536),
        authenticatorData: Type.Optional(B64(65536)),
        transports: Type.Optional(Type.Array(Transport, { maxItems: 8 })),
        publicKeyAlgorithm: Type.Optional(Type.Integer()),
        publicKey: Type.Optional(B64(8192)),
      },
      { additionalProperties: false },
    ),
    authenticatorAttachment: Type.Optional(Attachment),
    clientExtensionResults: ExtensionResults,
  },
  { additionalProperties: false },
);

/** `PublicKeyCredential.toJSON()` of `navigator.credentials.get()`. */
export const AuthenticationCredential = Type.Object(
  {
    id: CredentialId,
    rawId: CredentialId,
    type: Type.Literal('public-key'),
    response: Type.Object(
      {
        clientDataJSON: B64(8192),
        authenticatorData: B64(65536),
        signature: B64(8192),
        userHandle: Type.Optional(Nullable(B64(128))),
      },
      { additionalProperties: false },
    ),
    authenticatorAttachment: Type.Optional(Attachment),
    clientExtensionResults: ExtensionResults,
  },
  { additionalProperties: false },
);

const PasskeyName = Name(64);

export const RegistrationBody = Type.Object(
  {
    credential: RegistrationCredential,
    name: Type.Optional(PasskeyName),
  },
  { additionalProperties: false },
);

export const RenameBody = Type.Object({ name: PasskeyName }, { additionalProperties: false });

const TenantSlug = Type.String({ minLength: 1, maxLength: 63 });
const MfaToken = Type.String({ minLength: 1, maxLength: 128 });

export const PasswordlessOptionsBody = Type.Object(
  { tenant: TenantSlug },
  { additionalProperties: false },
);
export const PasswordlessBody = Type.Object(
  { tenant: TenantSlug, credential: AuthenticationCredential },
  { additionalProperties: false },
);
export const SecondFactorOptionsBody = Type.Object(
  { mfaToken: MfaToken },
  { additionalProperties: false },
);
export const SecondFactorBody = Type.Object(
  { mfaToken: MfaToken, credential: AuthenticationCredential },
  { additionalProperties: false },
);

const Descriptor = Type.Object({
  id: Type.String(),
  type: Type.String(),
  transports: Type.Optional(Type.Array(Type.String())),
});

/** For `navigator.credentials.create()` (after decoding the base64url fields). */
export const CreationOptions = Type.Object({
  challenge: Type.String(),
  rp: Type.Object({ name: Type.String(), id: Type.Optional(Type.String()) }),
  user: Type.Object({ id: Type.String(), name: Type.String(), displayName: Type.String() }),
  pubKeyCredParams: Type.Array(Type.Object({ alg: Type.Integer(), type: Type.String() })),
  timeout: Type.Optional(Type.Integer()),
  attestation: Type.Optional(Type.String()),
  excludeCredentials: Type.Optional(Type.Array(Descriptor)),
  authenticatorSelection: Type.Optional(
    Type.Object({
      authenticatorAttachment: Type.Optional(Type.String()),
      residentKey: Type.Optional(Type.String()),
      requireResidentKey: Type.Optional(Type.Boolean()),
      userVerification: Type.Optional(Type.String()),
    }),
  ),
  extensions: Type.Optional(Type.Object({ credProps: Type.Optional(Type.Boolean()) })),
  hints: Type.Optional(Type.Array(Type.String())),
});

/** For `navigator.credentials.get()`. */
export const RequestOptions = Type.Object({
  challenge: Type.String(),
  rpId: Type.Optional(Type.String()),
  timeout: Type.Optional(Type.Integer()),
  allowCredentials: Type.Optional(Type.Array(Descriptor)),
  userVerification: Type.Optional(Type.String()),
  hints: Type.Optional(Type.Array(Type.String())),
});

export const PasskeyItem = Type.Object({
  id: Uuid,
  name: Type.String(),
  createdAt: Timestamp,
  lastUsedAt: Nullable(Timestamp),
  transports: Type.Array(Type.String()),
  disabled: Type.Boolean({ description: 'True when it can no longer sign in' }),
  disabledReason: Nullable(
    Type.String({ description: '`cloned`: its signature counter went backwards' }),
  ),
});

/** A validated registration body as the library takes it (nulls dropped). */
export function toRegistrationResponse(
  c: Static<typeof RegistrationCredential>,
): RegistrationResponseJSON {
  const { authenticatorAttachment, ...rest } = c;
  return { ...rest, ...(authenticatorAttachment ? { authenticatorAttachment } : {}) };
}

/** A validated assertion body as the library takes it (nulls dropped). */
export function toAuthenticationResponse(
  c: Static<typeof AuthenticationCredential>,
): AuthenticationResponseJSON {
  const { authenticatorAttachment, response, ...rest } = c;
  const { userHandle, ...fields } = response;
  return {
    ...rest,
    response: { ...fields, ...(userHandle ? { userHandle } : {}) },
    ...(authenticatorAttachment ? { authenticatorAttachment } : {}),
  };
}
