import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AppError } from '../../errors.ts';

/**
 * The default root key: 32 random bytes in a file only the Custos user can read, created at the
 * first start. Never created while the key store already holds wrapped tenant keys: a new root
 * key over existing encrypted data would make all of it unreadable, so a missing file there is
 * an operator's mistake (a lost mount, a wrong path) to fix, not to paper over.
 */

export const ROOT_KEY_BYTES = 32;

const unusable = (
  code: 'keys.root_key_missing' | 'keys.root_key_insecure' | 'keys.root_key_invalid',
  message: string,
): AppError => new AppError('unavailable', code, message, { detail: message });

/**
 * Reads the root key file, creating it (mode 0600, directory 0700) when absent and `mayCreate`.
 * The caller zeroes the returned bytes once it has made a key of them.
 *
 * @example
 * ```ts
 * const bytes = readOrCreateRootKeyFile('/var/lib/custos/root.key', { mayCreate: !(await storeHasTenantKeys(store)) });
 * ```
 */
export function readOrCreateRootKeyFile(
  file: string,
  options: { mayCreate: boolean },
): { key: Buffer; created: boolean } {
  const dir = path.dirname(file);
  let created = false;
  if (!fs.existsSync(file)) {
    if (!options.mayCreate) {
      throw unusable(
        'keys.root_key_missing',
        `The root key file ${file} is missing, but the key store already holds keys wrapped by a root key. ` +
          'Restore the original root key file (or set CUSTOS_KEY_FILE to where it is); ' +
          'Custos will not create a new root key over existing encrypted data.',
      );
    }
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      // 'wx': never overwrite a key another process created at the same moment.
      const fd = fs.openSync(file, 'wx', 0o600);
      try {
        const key = randomBytes(ROOT_KEY_BYTES);
        fs.writeSync(fd, key);
        key.fill(0);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  checkDirectory(dir, file);
  const stat = fs.statSync(file);
  if (!stat.isFile()) {
    throw unusable('keys.root_key_invalid', `The root key file ${file} is not a regular file.`);
  }
  if ((stat.mode & 0o077) !== 0) {
    throw unusable(
      'keys.root_key_insecure',
      `The root key file ${file} is accessible to other users (mode ${(stat.mode & 0o777).toString(8)}). ` +
        `Run: chmod 600 ${file} (and check who could have copied it).`,
    );
  }
  if (stat.size !== ROOT_KEY_BYTES) {
    throw unusable(
      'keys.root_key_invalid',
      `The root key file ${file} holds ${stat.size} bytes; a root key is exactly ${ROOT_KEY_BYTES}. ` +
        'Restore the original file.',
    );
  }
  return { key: fs.readFileSync(file), created };
}

/** Another user able to write the directory could replace the key file with their own. */
function checkDirectory(dir: string, file: string): void {
  const stat = fs.statSync(dir);
  if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) {
    throw unusable(
      'keys.root_key_insecure',
      `The directory of the root key file ${file} is writable by other users (mode ${(stat.mode & 0o777).toString(8)}). ` +
        `Run: chmod 700 ${dir}`,
    );
  }
}
