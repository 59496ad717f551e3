import { createSecretKey, randomBytes } from 'node:crypto';
import { blindIndex, decryptGroupText, encryptGroup } from '../../core/crypto/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { KeyService } from '../keys/service.ts';
import { createFieldCrypto } from '../records/field-crypto.ts';
import { userSpec } from './spec.ts';

const DECOY_ADDRESS = 'nobody@decoy.invalid';
const DECOY_NAME = 'Nobody';
/** At most this many tenants' decoys are kept (then the map starts afresh). */
const MAX_DECOYS = 1000;

/** The stored columns of a user's e-mail and name. */
export interface SealedUserColumns {
  email: string;
  name: string;
  email_bidx: string | null;
  email_eq: string | null;
}

/**
 * A user's e-mail and name at rest (see spec.ts): sealed on write, opened on read, and the
 * e-mail found through its blind index, candidates confirmed after decryption. Every module that
 * reads or writes `users.email` / `users.name` goes through this, built once in compose.ts.
 *
 * @example
 * ```ts
 * const users = createUserCrypto({ keys });
 * const columns = await users.seal(tenantId, userId, { email, name });
 * const [user] = await users.open(tenantId, [row]);
 * ```
 */
export function createUserCrypto(deps: { keys: KeyService; indexBits?: number | undefined }) {
  const crypto = createFieldCrypto(userSpec, deps);
  const bits = deps.indexBits;
  // A lookup in a tenant that does not exist still computes one HMAC (under a key nobody has)
  // and runs its query, so that it costs what a lookup in a real tenant costs.
  const decoyKey = createSecretKey(randomBytes(32));
  // A miss still opens one sealed pair, as a hit does: the tenant's decoy (sealed once per
  // process under its data key), or, for a tenant that does not exist, one under a local key.
  const decoyRef = { key: createSecretKey(randomBytes(32)), keyId: 'decoy', keyVersion: 1 };
  const decoyAd = { tenantId: 'decoy', object: 'user', recordId: 'decoy' };
  const localDecoy = encryptGroup(decoyRef.key, decoyRef, decoyAd, [
    ['email', DECOY_ADDRESS],
    ['name', DECOY_NAME],
  ]);
  const decoys = new Map<string, Promise<{ id: string; email: string; name: string }>>();

  function tenantDecoy(tenantId: string) {
    let decoy = decoys.get(tenantId);
    if (decoy === undefined) {
      const id = newId();
      decoy = seal(tenantId, id, { email: DECOY_ADDRESS, name: DECOY_NAME }).then((sealed) => ({
        id,
        email: sealed.email,
        name: sealed.name,
      }));
      if (decoys.size >= MAX_DECOYS) decoys.clear();
      decoys.set(tenantId, decoy);
    }
    return decoy;
  }

  /** The work of opening a candidate, for a lookup that found none. */
  async function decoyWork(tenantId: string | null): Promise<void> {
    if (tenantId === null) {
      decryptGroupText(decoyRef, decoyAd, [
        ['email', localDecoy[0]!],
        ['name', localDecoy[1]!],
      ]);
      return;
    }
    try {
      await open(tenantId, [await tenantDecoy(tenantId)]);
    } catch (err) {
      // Sealed under a version retired since: seal another next time.
      decoys.delete(tenantId);
      if (!(err instanceof AppError)) throw err;
    }
  }

  /** E-mail and name sealed as one group (both always written together) with the lookup hashes. */
  async function seal(
    tenantId: string,
    userId: string,
    values: { email: string; name: string },
  ): Promise<SealedUserColumns> {
    const sealed = await crypto.seal(tenantId, userId, values);
    // No regional index among a user's fields: no connection is needed for the index keys.
    const index = crypto.indexColumnsWith(await crypto.indexKeys(tenantId, null, values), values);
    return {
      email: sealed.values.email as string,
      name: sealed.values.name as string,
      email_bidx: (index.email_bidx as string | null | undefined) ?? null,
      email_eq: (index.email_eq as string | null | undefined) ?? null,
    };
  }

  /**
   * Rows of one tenant with `email` and `name` opened (both must be selected: they are one
   * group). A value that fails authentication throws `resource.integrity_failed`.
   */
  function open<R extends { id: string; email: string; name: string }>(
    tenantId: string,
    rows: readonly R[],
  ): Promise<R[]> {
    return crypto.open(tenantId, rows);
  }

  async function openOne<R extends { id: string; email: string; name: string }>(
    tenantId: string,
    row: R,
  ): Promise<R> {
    const [opened] = await open(tenantId, [row]);
    return opened as R;
  }

  /**
   * The user of the tenant with this e-mail, if any: `query` selects the tenant's users whose
   * `email_bidx` is the given index (a truncated index collides by design), each candidate is
   * opened and the one whose e-mail normalises to the same address is returned. With a null
   * tenant (an unknown one) the same work is done against nothing.
   */
  async function findByEmail<R extends { id: string; email: string; name: string }>(
    tenantId: string | null,
    email: string,
    query: (emailBidx: string) => Promise<R[]>,
  ): Promise<R | undefined> {
    const filter =
      tenantId === null ? null : await crypto.indexFilter(null, tenantId, 'email', email);
    if (tenantId === null || filter === null) {
      await query(blindIndex(decoyKey, DECOY_ADDRESS, { bits }));
      await decoyWork(tenantId);
      return undefined;
    }
    const candidates = await query(filter.value);
    if (candidates.length === 0) {
      await decoyWork(tenantId);
      return undefined;
    }
    return (await open(tenantId, candidates)).find((row) => filter.confirm(row));
  }

  /**
   * An address waiting for confirmation (an e-mail change link): sealed alone under the tenant
   * data key, bound to the link's id, so it cannot pass for a user's stored e-mail.
   */
  async function sealPendingEmail(tenantId: string, linkId: string, email: string) {
    const key = await crypto.writeKey(tenantId, linkId, {});
    return crypto.sealWith(key, tenantId, linkId, { email }).email as string;
  }

  async function openPendingEmail(tenantId: string, linkId: string, stored: string) {
    const [row] = await crypto.open(tenantId, [{ id: linkId, email: stored, name: null }]);
    return row?.email as string;
  }

  return { seal, open, openOne, findByEmail, sealPendingEmail, openPendingEmail };
}

export type UserCrypto = ReturnType<typeof createUserCrypto>;
