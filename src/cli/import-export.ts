import fs from 'node:fs';
import { randomUUID, type JsonWebKey } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SingleBar, Presets } from 'cli-progress';
import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import { loadConfig } from '../config.ts';
import { createServices } from '../compose.ts';
import type { Actor } from '../core/policy/index.ts';
import type { DatabaseHandle } from '../db/database.ts';
import type { ExportFormat, ImportOptions, ImportReport } from '../modules/contacts/transfer.ts';
import { CliExit } from './main.ts';

interface CliDeps {
  out: (line: string) => void;
  withDatabase: <T>(fn: (database: DatabaseHandle) => Promise<T>) => Promise<T>;
}

/** The tenant named by --tenant, or the only tenant when there is just one. */
export async function systemActor(
  database: DatabaseHandle,
  slug: string | undefined,
): Promise<Actor> {
  let query = database.db.selectFrom('tenants').select(['id', 'slug']);
  if (slug !== undefined) query = query.where('slug', '=', slug);
  const tenants = await query.limit(2).execute();
  if (tenants.length === 0) throw new CliExit(`no tenant "${slug ?? ''}"`, 1);
  if (tenants.length > 1) throw new CliExit('several tenants exist: name one with --tenant', 1);
  return {
    kind: 'system',
    tenantId: tenants[0]!.id,
    job: 'cli',
    role: 'owner',
    request: { requestId: randomUUID(), ip: null, userAgent: 'custos-cli' },
  };
}

function services(database: DatabaseHandle) {
  return createServices({ config: loadConfig(), database, clock: systemClock });
}

export function printReport(report: ImportReport, out: (line: string) => void) {
  out(
    report.committed
      ? `Imported: ${report.created} created, ${report.updated} updated, ${report.skipped} skipped, ${report.failed} failed of ${report.total} rows (${report.companiesCreated} companies created).`
      : `Nothing imported: ${report.failed} of ${report.total} rows cannot be imported (mode all-or-nothing).`,
  );
  if (report.ignoredColumns.length > 0) out(`Ignored columns: ${report.ignoredColumns.join(', ')}`);
  for (const e of report.errors)
    out(`  row ${e.row}${e.field ? ` (${e.field})` : ''}: ${e.reason}`);
  if (report.errorsTruncated)
    out(`  ... only the first ${report.errors.length} problems are listed`);
}

/** `custos import contacts FILE` and `custos export contacts`. */
export function registerTransferCommands(program: Command, deps: CliDeps) {
  const { out, withDatabase } = deps;
  program
    .command('import')
    .description('import records from a file')
    .command('contacts')
    .description('import contacts from a CSV file (UTF-8 or UTF-16 with BOM)')
    .argument('<file>', 'CSV file; the first line names the columns')
    .option('--tenant <slug>', 'tenant to import into (may be left out when there is only one)')
    .option('--mode <mode>', 'all-or-nothing | best-effort', 'all-or-nothing')
    .option('--on-duplicate <action>', 'same e-mail as an existing contact: skip | merge', 'skip')
    .option('--companies <policy>', 'unknown company names: create | match', 'create')
    .option('--mapping <json>', 'JSON object: CSV header -> field (or null to ignore)')
    .action(
      async (
        file: string,
        opts: {
          tenant?: string;
          mode: string;
          onDuplicate: string;
          companies: string;
          mapping?: string;
        },
      ) => {
        const choice = <T extends string>(name: string, value: string, allowed: readonly T[]) => {
          if (!(allowed as readonly string[]).includes(value))
            throw new CliExit(`${name} must be one of ${allowed.join(', ')}`, 2);
          return value as T;
        };
        const options: ImportOptions = {
          mode: choice('--mode', opts.mode, ['all-or-nothing', 'best-effort'] as const),
          onDuplicate: choice('--on-duplicate', opts.onDuplicate, ['skip', 'merge'] as const),
          companies: choice('--companies', opts.companies, ['create', 'match'] as const),
        };
        if (opts.mapping !== undefined) {
          try {
            options.mapping = JSON.parse(opts.mapping) as Record<string, string | null>;
          } catch {
            throw new CliExit('--mapping must be a JSON object', 2);
          }
        }
        let size: number;
        try {
          size = fs.statSync(file).size;
        } catch {
          throw new CliExit(`cannot read ${file}`, 1);
        }
        const report = await withDatabase(async (database) => {
          const actor = await systemActor(database, opts.tenant);
          const input = fs.createReadStream(file);
          const bar = new SingleBar(
            {
              stream: process.stderr,
              format: 'importing [{bar}] {percentage}% | {value}/{total} bytes',
            },
            Presets.shades_classic,
          );
          bar.start(size, 0);
          let read = 0;
          input.on('data', (chunk) => bar.update((read += chunk.length)));
          try {
            return await services(database).contactTransfer.import(actor, input, options);
          } finally {
            bar.stop();
          }
        });
        printReport(report, out);
        if (!report.committed) throw new CliExit('import refused; nothing was written', 1);
      },
    );

  program
    .command('export')
    .description('export records to a file')
    .command('contacts')
    .description(
      'export contacts as CSV (formula cells neutralised) or JSON, optionally encrypted to an RSA public key (JWE)',
    )
    .requiredOption('--tenant <slug>', 'tenant to export')
    .option('--format <format>', 'csv | json', 'csv')
    .option(
      '--recipient <key.pem>',
      'RSA public key (PEM, or a JWK in a .json file), at least 2048 bits: write a compact JWE (RSA-OAEP-256 + A256GCM) that only its private key opens',
    )
    .option('--out <file>', 'write here (created with mode 0600) instead of standard output')
    .action(async (opts: { tenant: string; format: string; recipient?: string; out?: string }) => {
      if (opts.format !== 'csv' && opts.format !== 'json')
        throw new CliExit('--format must be one of csv, json', 2);
      const format: ExportFormat = opts.format;
      const recipient = opts.recipient === undefined ? undefined : readRecipient(opts.recipient);
      let kid: string | undefined;
      await withDatabase(async (database) => {
        const actor = await systemActor(database, opts.tenant);
        const result = await services(database).contactTransfer.export(actor, {
          format,
          recipient,
        });
        // The file holds personal data (or a package for one recipient): owner-only.
        const target = opts.out
          ? fs.createWriteStream(opts.out, { mode: 0o600, flags: 'w' })
          : process.stdout;
        if (result.encrypted) {
          kid = result.recipientKid;
          // No newline in the file: it is exactly the compact serialisation.
          const chunks = opts.out ? [result.body] : [result.body, '\n'];
          await pipeline(Readable.from(chunks), target, { end: opts.out !== undefined });
        } else {
          await pipeline(result.body, target, { end: opts.out !== undefined });
        }
      });
      const sealed = kid === undefined ? '' : ` encrypted to key ${kid} (JWE)`;
      if (opts.out) out(`Exported contacts to ${opts.out}${sealed}`);
    });
}

/** A recipient key file: PEM as is, or a JWK (a JSON object). */
function readRecipient(file: string): string | JsonWebKey {
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch {
    throw new CliExit(`cannot read ${file}`, 1);
  }
  if (!content.trimStart().startsWith('{')) return content;
  try {
    return JSON.parse(content) as JsonWebKey;
  } catch {
    throw new CliExit(`${file} is neither a PEM key nor a JSON Web Key`, 2);
  }
}
