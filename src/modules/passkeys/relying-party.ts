import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { decodeClientDataJSON, isoBase64URL } from '@simplewebauthn/server/helpers';
import { CEREMONY_MS } from './repository.ts';

/** Who passkeys are bound to: the RP id (a domain) and the one origin responses must come from. */
export interface RelyingParty {
  name: string;
  id: string;
  origin: string;
}

/**
 * COSE algorithms accepted: EdDSA, ES256, RS256. Listed explicitly so that registration and
 * verification agree whatever the library's default becomes.
 */
const ALGORITHMS = [-8, -7, -257];

/** The challenge a response claims to answer, or null when its client data is unreadable. */
export function challengeOf(response: { response: { clientDataJSON: string } }): string | null {
  try {
    const data: unknown = decodeClientDataJSON(response.response.clientDataJSON);
    const challenge = (data as { challenge?: unknown } | null)?.challenge;
    return typeof challenge === 'string' ? challenge : null;
  } catch {
    return null;
  }
}

export function registrationOptions(
  rp: RelyingParty,
  input: {
    challenge: string;
    userHandle: string;
    userName: string;
    displayName: string;
    exclude: ReadonlyArray<{ credentialId: string; transports: string[] }>;
  },
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: input.userName,
    userDisplayName: input.displayName,
    userID: isoBase64URL.toBuffer(input.userHandle),
    challenge: isoBase64URL.toBuffer(input.challenge),
    timeout: CEREMONY_MS,
    attestationType: 'none',
    excludeCredentials: input.exclude.map((c) => ({
      id: c.credentialId,
      transports: c.transports,
    })),
    // Discoverable and user-verifying: the same passkey serves passwordless sign-in.
    authenticatorSelection: {
      residentKey: 'required',
      requireResidentKey: true,
      userVerification: 'required',
    },
    supportedAlgorithmIDs: ALGORITHMS,
  });
}

export function authenticationOptions(
  rp: RelyingParty,
  input: {
    challenge: string;
    allow: ReadonlyArray<{ credentialId: string; transports: string[] }>;
    userVerification: 'required' | 'preferred';
  },
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return generateAuthenticationOptions({
    rpID: rp.id,
    challenge: isoBase64URL.toBuffer(input.challenge),
    timeout: CEREMONY_MS,
    allowCredentials: input.allow.map((c) => ({ id: c.credentialId, transports: c.transports })),
    userVerification: input.userVerification,
  });
}

export interface NewCredential {
  credentialId: string;
  publicKey: string;
  counter: number;
  transports: string[];
  aaguid: string;
}

/**
 * Checks an attestation (format, origin, RP id hash, challenge, user presence and verification,
 * algorithm); null for any failure, including input the library cannot parse.
 */
export async function checkRegistration(
  rp: RelyingParty,
  response: RegistrationResponseJSON,
  challenge: string,
): Promise<NewCredential | null> {
  try {
    const result = await verifyRegistrationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserPresence: true,
      requireUserVerification: true,
      supportedAlgorithmIDs: ALGORITHMS,
    });
    if (!result.verified) return null;
    const { credential, aaguid } = result.registrationInfo;
    return {
      credentialId: credential.id,
      publicKey: isoBase64URL.fromBuffer(credential.publicKey),
      counter: credential.counter,
      transports: (response.response.transports ?? []).slice(0, 8),
      aaguid,
    };
  } catch {
    return null;
  }
}

/**
 * Checks an assertion's signature, origin, RP id, challenge and flags against the stored public
 * key, and returns the counter it presents. The counter is deliberately not compared here (the
 * library would refuse a stale one before checking the signature): the caller compares it once
 * the signature is known to be right, so that only the real key can get a credential disabled.
 */
export async function checkAssertion(
  rp: RelyingParty,
  response: AuthenticationResponseJSON,
  challenge: string,
  stored: { credentialId: string; publicKey: string; userHandle: string },
  userVerification: 'required' | 'preferred',
): Promise<{ counter: number } | null> {
  const handle = response.response.userHandle ?? undefined;
  // A discoverable credential names its user: it must be the credential's owner.
  if (userVerification === 'required' && handle === undefined) return null;
  if (handle !== undefined && handle !== stored.userHandle) return null;
  try {
    const result = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      credential: {
        id: stored.credentialId,
        publicKey: isoBase64URL.toBuffer(stored.publicKey),
        counter: 0,
      },
      requireUserVerification: userVerification === 'required',
    });
    return result.verified ? { counter: result.authenticationInfo.newCounter } : null;
  } catch {
    return null;
  }
}
