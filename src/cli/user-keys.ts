import { systemClock } from '../clock.ts';
import { loadConfig } from '../config.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { assertKeysUsable, openKeys } from '../modules/keys/open.ts';
import { encryptClearUsers } from '../modules/users/backfill.ts';
import { createUserCrypto, type UserCrypto } from '../modules/users/crypto.ts';

/**
 * For the commands that read or write users' e-mail and name (`setup`, `report`): opens the
 * keys, seals users still stored in clear (as the server does at start), and closes the keys
 * afterwards.
 */
export async function withUserCrypto<T>(
  database: DatabaseHandle,
  fn: (users: UserCrypto) => Promise<T>,
): Promise<T> {
  const keys = await openKeys(loadConfig(), { clock: systemClock });
  try {
    await assertKeysUsable(keys);
    await encryptClearUsers({ database, keys: keys.service });
    return await fn(createUserCrypto({ keys: keys.service }));
  } finally {
    await keys.service.close();
  }
}
