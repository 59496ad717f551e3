import fs from 'node:fs';
import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { securityReportData } from '../modules/reports/data.ts';
import { renderSecurityReport } from '../modules/reports/html.ts';
import { reportRange } from '../modules/reports/service.ts';
import { CliExit } from './main.ts';
import { withUserCrypto } from './user-keys.ts';

interface CliDeps {
  out: (line: string) => void;
  withDatabase: <T>(fn: (database: DatabaseHandle) => Promise<T>) => Promise<T>;
}

/** `custos report security`: the tenant's security report as HTML (with SVG charts) or JSON. */
export function registerReportCommands(program: Command, deps: CliDeps): void {
  const report = program.command('report').description('security reports');
  report
    .command('security')
    .description('sign-ins and failures, alerts, sensitive reads and exports, top addresses')
    .requiredOption('--tenant <slug>', 'the tenant')
    .option(
      '--from <date>',
      'start (inclusive), YYYY-MM-DD or ISO time; default 30 days before --to',
    )
    .option('--to <date>', 'end (exclusive), YYYY-MM-DD or ISO time; default now')
    .option('--format <format>', 'html or json', 'html')
    .option('--out <file>', 'write the report to this file (mode 0600) instead of standard output')
    .action(
      async (opts: {
        tenant: string;
        from?: string;
        to?: string;
        format: string;
        out?: string;
      }) => {
        if (opts.format !== 'html' && opts.format !== 'json') {
          throw new CliExit('--format must be html or json', 1);
        }
        const range = reportRange(systemClock, opts.from, opts.to);
        await deps.withDatabase(async (database) => {
          const { db } = database;
          const tenant = await db
            .selectFrom('tenants')
            .select(['id', 'slug', 'name'])
            .where('slug', '=', opts.tenant)
            .executeTakeFirst();
          if (!tenant) throw new CliExit(`no tenant "${opts.tenant}"`, 1);
          const data = await withUserCrypto(database, (users) =>
            securityReportData(db, users, tenant, range),
          );
          const text =
            opts.format === 'json'
              ? `${JSON.stringify(data, null, 2)}\n`
              : renderSecurityReport(data);
          if (opts.out === undefined) {
            deps.out(text.trimEnd());
            return;
          }
          fs.writeFileSync(opts.out, text, { mode: 0o600 });
          deps.out(`Wrote the security report of "${tenant.slug}" to ${opts.out}.`);
        });
      },
    );
}
