import { describe, expect, it } from 'vitest';
import { SoftwareAuthenticator } from '../../../test/helpers/webauthn-authenticator.ts';
import {
  authenticationOptions,
  challengeOf,
  checkAssertion,
  checkRegistration,
  registrationOptions,
} from './relying-party.ts';
import { userHandleOf } from './repository.ts';

const rp = { name: 'Custos', id: 'crm.example.com', origin: 'https://crm.example.com' };
const challenge = Buffer.alloc(32, 5).toString('base64url');
const handle = userHandleOf('tenant-1', 'user-1');

async function registered() {
  const auth = SoftwareAuthenticator.create(rp.origin);
  const options = await registrationOptions(rp, {
    challenge,
    userHandle: handle,
    userName: 'a@example.com',
    displayName: 'A',
    exclude: [],
  });
  const credential = await checkRegistration(rp, auth.register(options), challenge);
  if (!credential) throw new Error('registration refused');
  return { auth, stored: { ...credential, userHandle: handle } };
}

describe('relying party', () => {
  it('derives a stable 32-byte user handle per tenant and user', () => {
    expect(userHandleOf('tenant-1', 'user-1')).toBe(handle);
    expect(Buffer.from(handle, 'base64url')).toHaveLength(32);
    expect(userHandleOf('tenant-2', 'user-1')).not.toBe(handle);
  });

  it('registers an ES256 "none" attestation and reads its counter and transports', async () => {
    const { auth, stored } = await registered();
    expect(stored.credentialId).toBe(auth.id);
    expect(stored.counter).toBe(0);
    expect(stored.transports).toEqual(['internal']);
    expect(stored.aaguid).toBe('00000000-0000-0000-0000-000000000000');
  });

  it('accepts an assertion and returns the counter without judging it', async () => {
    const { auth, stored } = await registered();
    const options = await authenticationOptions(rp, {
      challenge,
      allow: [],
      userVerification: 'required',
    });
    expect(options.challenge).toBe(challenge);
    const ok = await checkAssertion(rp, auth.assert(options), challenge, stored, 'required');
    expect(ok).toEqual({ counter: 1 });
    // A stale counter still verifies here: the caller compares it (after the signature).
    const stale = auth.assert(options, { counter: 0 });
    expect(await checkAssertion(rp, stale, challenge, stored, 'required')).toEqual({ counter: 0 });
  });

  it('refuses a foreign or missing user handle when the user is not known beforehand', async () => {
    const { auth, stored } = await registered();
    const options = { challenge, rpId: rp.id };
    const other = auth.assert(options, { userHandle: userHandleOf('tenant-1', 'user-2') });
    expect(await checkAssertion(rp, other, challenge, stored, 'preferred')).toBeNull();
    const none = auth.assert(options, { userHandle: null });
    expect(await checkAssertion(rp, none, challenge, stored, 'required')).toBeNull();
    expect(await checkAssertion(rp, none, challenge, stored, 'preferred')).toEqual({
      counter: 2,
    });
  });

  it('reads the challenge of a response, or null for unreadable client data', () => {
    const auth = SoftwareAuthenticator.create(rp.origin);
    expect(challengeOf(auth.assert({ challenge, rpId: rp.id }))).toBe(challenge);
    expect(challengeOf({ response: { clientDataJSON: 'bm90IGpzb24' } })).toBeNull();
    expect(challengeOf({ response: { clientDataJSON: 'bnVsbA' } })).toBeNull();
  });
});
