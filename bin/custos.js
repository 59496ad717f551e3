#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx custos` works straight after `npm ci`.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const tsx = require.resolve('tsx/cli');
// A young generation of 32 MiB per semi-space (V8's default tops out at 16): `custos audit
// verify` reads every event of a log in pages of rows that live a few milliseconds; collecting
// them took ~14% of a verification's time with the default and ~5% with this, for ~20% more
// events verified per CPU second (`npm run bench:audit` runs with the same flag). Passed in
// NODE_OPTIONS so that tsx's own child process gets it too; an operator's NODE_OPTIONS are kept,
// after it, and win.
const CLI_NODE_OPTIONS = '--max-semi-space-size=32';
const nodeOptions = [CLI_NODE_OPTIONS, process.env.NODE_OPTIONS].filter(Boolean).join(' ');
const result = spawnSync(
  process.execPath,
  [tsx, path.join(here, '..', 'src', 'cli', 'main.ts'), ...process.argv.slice(2)],
  {
    stdio: 'inherit',
    env: { ...process.env, NODE_OPTIONS: nodeOptions },
  },
);
process.exit(result.status ?? 1);
