import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isoCBOR } from '@simplewebauthn/server/helpers';

type CBORType = Parameters<typeof isoCBOR.encode>[0];

/**
 * A software WebAuthn authenticator for tests, built on node:crypto: one ES256 (P-256) key pair,
 * "none" attestation, and assertions with a signature counter that rises by one per use. It
 * answers options as a browser would hand them back (`PublicKeyCredential.toJSON()`), and every
 * part of a response can be bent (origin, RP id, challenge, flags, counter) to test refusals.
 * `clone()` copies the key and the counter as they are now: a cloned authenticator whose counter
 * falls behind the original's.
 */
export const FLAG_UP = 0x01;
export const FLAG_UV = 0x04;
export const FLAG_AT = 0x40;

export interface Bend {
  origin?: string;
  rpId?: string;
  challenge?: string;
  type?: string;
  flags?: number;
  /** Sign with this counter instead of the next one. */
  counter?: number;
  /** Replace the signature (e.g. with another key's). */
  signWith?: KeyObject;
  userHandle?: string | null;
}

interface CreationOptions {
  challenge: string;
  rp: { id?: string };
  user: { id: string };
}

interface RequestOptions {
  challenge: string;
  rpId?: string;
}

const b64u = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest();

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export class SoftwareAuthenticator {
  counter: number;
  userHandle: string | null;

  private constructor(
    readonly origin: string,
    readonly credentialId: Buffer,
    readonly privateKey: KeyObject,
    readonly publicKey: KeyObject,
    counter: number,
    userHandle: string | null,
  ) {
    this.counter = counter;
    this.userHandle = userHandle;
  }

  /** A new authenticator for pages at `origin` (the server's CUSTOS_PUBLIC_URL). */
  static create(origin = 'http://localhost:8080'): SoftwareAuthenticator {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return new SoftwareAuthenticator(origin, randomBytes(32), privateKey, publicKey, 0, null);
  }

  get id(): string {
    return b64u(this.credentialId);
  }

  /** Same key, same id, the counter as it is now (it then falls behind the original). */
  clone(): SoftwareAuthenticator {
    return new SoftwareAuthenticator(
      this.origin,
      this.credentialId,
      this.privateKey,
      this.publicKey,
      this.counter,
      this.userHandle,
    );
  }

  /** COSE_Key of the public key: kty EC2, alg ES256, crv P-256, x, y. */
  cosePublicKey(): Uint8Array {
    const jwk = this.publicKey.export({ format: 'jwk' });
    return isoCBOR.encode(
      new Map<number, number | Uint8Array>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url'))],
        [-3, new Uint8Array(Buffer.from(jwk.y ?? '', 'base64url'))],
      ]),
    );
  }

  private clientData(type: string, challenge: string, bend: Bend): Buffer {
    return Buffer.from(
      JSON.stringify({
        type: bend.type ?? type,
        challenge: bend.challenge ?? challenge,
        origin: bend.origin ?? this.origin,
        crossOrigin: false,
      }),
    );
  }

  /** The answer to `navigator.credentials.create(options)`. */
  register(options: CreationOptions, bend: Bend = {}) {
    const rpId = bend.rpId ?? options.rp.id ?? new URL(this.origin).hostname;
    this.userHandle = options.user.id;
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(this.credentialId.length);
    const authData = Buffer.concat([
      sha256(rpId),
      Buffer.from([bend.flags ?? FLAG_UP | FLAG_UV | FLAG_AT]),
      uint32(bend.counter ?? this.counter),
      Buffer.alloc(16), // AAGUID: none
      idLength,
      this.credentialId,
      this.cosePublicKey(),
    ]);
    const attestation = new Map<string, CBORType>();
    attestation.set('fmt', 'none');
    attestation.set('attStmt', new Map<string, CBORType>());
    attestation.set('authData', new Uint8Array(authData));
    const attestationObject = isoCBOR.encode(attestation);
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key' as const,
      response: {
        clientDataJSON: b64u(this.clientData('webauthn.create', options.challenge, bend)),
        attestationObject: b64u(attestationObject),
        transports: ['internal'],
      },
      authenticatorAttachment: 'platform' as const,
      clientExtensionResults: {},
    };
  }

  /** The answer to `navigator.credentials.get(options)`; each call uses the counter once. */
  assert(options: RequestOptions, bend: Bend = {}) {
    const rpId = bend.rpId ?? options.rpId ?? new URL(this.origin).hostname;
    if (bend.counter === undefined) this.counter += 1;
    const authData = Buffer.concat([
      sha256(rpId),
      Buffer.from([bend.flags ?? FLAG_UP | FLAG_UV]),
      uint32(bend.counter ?? this.counter),
    ]);
    const clientDataJSON = this.clientData('webauthn.get', options.challenge, bend);
    // ECDSA over authenticatorData || SHA-256(clientDataJSON); node signs DER by default.
    const signature = sign(
      'sha256',
      Buffer.concat([authData, sha256(clientDataJSON)]),
      bend.signWith ?? this.privateKey,
    );
    const handle = bend.userHandle === undefined ? this.userHandle : bend.userHandle;
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key' as const,
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(signature),
        ...(handle === null ? {} : { userHandle: handle }),
      },
      authenticatorAttachment: 'platform' as const,
      clientExtensionResults: {},
    };
  }
}
