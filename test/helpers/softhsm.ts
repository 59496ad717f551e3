import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe } from 'vitest';

/**
 * SoftHSM2 tokens for the PKCS#11 tests (Debian package `softhsm2`; see MACHINE-NOTES.md). The
 * tests skip, with the reason in their name, only when the package is absent.
 */
export const SOFTHSM_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';

export const haveSoftHsm =
  spawnSync('softhsm2-util', ['--version']).status === 0 && fs.existsSync(SOFTHSM_LIBRARY);

export const SOFTHSM_MISSING =
  'SKIPPED: softhsm2-util or /usr/lib/softhsm/libsofthsm2.so is NOT INSTALLED (apt-get install softhsm2)';

/** `describe`, or a skipped one whose name says loudly that SoftHSM2 is missing. */
export function describeWithSoftHsm(name: string, body: () => void): void {
  if (haveSoftHsm) describe(name, body);
  else describe.skip(`${SOFTHSM_MISSING}: ${name}`, body);
}

/**
 * Initialises a token in a fresh temporary directory and points SOFTHSM2_CONF at it. SoftHSM
 * reads that variable when the library is initialised, so call this before the first
 * provider of the process opens.
 */
export function createSoftHsmToken(options: { label: string; pin: string }): {
  dir: string;
  remove(): void;
} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-hsm-'));
  fs.mkdirSync(path.join(dir, 'tokens'));
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(
    conf,
    `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  process.env.SOFTHSM2_CONF = conf;
  execFileSync('softhsm2-util', [
    '--init-token',
    '--free',
    '--label',
    options.label,
    '--so-pin',
    '12345678',
    '--pin',
    options.pin,
  ]);
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Runs an ES module snippet (TypeScript imports allowed) in a child process; returns stdout. */
export function runModuleInChild(source: string): string {
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], {
    env: { ...process.env },
    encoding: 'utf8',
  });
}
