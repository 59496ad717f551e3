import { Command, CommanderError } from 'commander';
import { systemClock } from '../clock.ts';
import { ConfigError, loadConfig, setupPasswordFrom } from '../config.ts';
import { migrateToLatest, openDatabase, type DatabaseHandle } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { runAsSystem } from '../db/tenant-scope.ts';
import { setupTenant } from '../modules/tenants/service.ts';
import { registerTransferCommands } from './import-export.ts';
import { registerAuditCommands } from './audit.ts';
import { registerReportCommands } from './report.ts';
import { registerKeyCommands } from './keys.ts';
import { withUserCrypto } from './user-keys.ts';
import { promptSecret } from './prompt.ts';

/** Thrown by commands for a clean exit with a message and status. */
export class CliExit extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

async function withDatabase<T>(fn: (database: DatabaseHandle) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const database = openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: 2,
  });
  try {
    await migrateToLatest(database.db);
    // The operator's commands (setup, import, export, audit, keys) span tenants.
    return await runAsSystem('cli', () => fn(database));
  } finally {
    await database.close();
  }
}

interface SetupOptions {
  tenant: string;
  name: string;
  email: string;
  ownerName?: string;
  phoneRegion?: string;
}

export function buildCli(
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Command {
  const program = new Command('custos')
    .description('Custos CRM: server administration')
    .exitOverride()
    .showHelpAfterError();

  program
    .command('migrate')
    .description('apply pending database migrations')
    .action(async () => {
      const config = loadConfig();
      const database = openDatabase({
        databaseUrl: config.databaseUrl,
        dataDir: config.dataDir,
        poolSize: 1,
      });
      try {
        const applied = await migrateToLatest(database.db);
        out(applied.length === 0 ? 'Database is up to date.' : `Applied: ${applied.join(', ')}`);
      } finally {
        await database.close();
      }
    });

  program
    .command('setup')
    .description('create a tenant and its owner (password from CUSTOS_SETUP_PASSWORD or a prompt)')
    .requiredOption(
      '--tenant <slug>',
      'tenant identifier used at sign-in (lower-case, digits, dashes)',
    )
    .requiredOption('--name <organisation>', 'organisation name')
    .requiredOption('--email <email>', "owner's e-mail address")
    .option('--owner-name <name>', "owner's display name (defaults to the e-mail)")
    .option(
      '--phone-region <code>',
      'region national phone numbers are read in, e.g. US or DE (default CUSTOS_DEFAULT_PHONE_REGION; none: international numbers only)',
    )
    .action(async (opts: SetupOptions) => {
      const password = setupPasswordFrom() ?? (await promptSecret('Owner password: '));
      const phoneRegion = opts.phoneRegion ?? loadConfig().defaultPhoneRegion;
      await withDatabase(async (database) => {
        const { tenant } = await withUserCrypto(database, (users) =>
          setupTenant(
            { db: database.db, clock: systemClock, users },
            {
              slug: opts.tenant,
              name: opts.name,
              ownerEmail: opts.email,
              ownerName: opts.ownerName ?? opts.email,
              password,
              phoneRegion,
            },
          ),
        );
        out(
          `Created tenant "${tenant.slug}" with owner ${opts.email}. Sign in with POST /api/v1/auth/login.`,
        );
      });
    });

  registerTransferCommands(program, { out, withDatabase });
  registerKeyCommands(program, { out, withDatabase });
  registerAuditCommands(program, { out, withDatabase });
  registerReportCommands(program, { out, withDatabase });
  return program;
}

/** Runs the CLI; returns the exit status instead of exiting, for tests. */
export async function runCli(argv: string[], out?: (line: string) => void): Promise<number> {
  const err = (line: string) => process.stderr.write(`${line}\n`);
  try {
    await buildCli(out).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof ConfigError) err(`custos: configuration error: ${error.message}`);
    else if (error instanceof AppError)
      err(`custos: ${error.detail ?? error.message} (${error.code})`);
    else if (error instanceof CliExit) {
      err(`custos: ${error.message}`);
      return error.status;
    } else err(`custos: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli/main.ts')) {
  process.exitCode = await runCli(process.argv.slice(2));
}
