import type { SecurityReportData } from './data.ts';
import { barChart, columnChart, escapeXml } from './svg.ts';

/**
 * The security report as one self-contained HTML page: inline SVG charts and tables of the same
 * numbers, no script, no external resource (it is served with a CSP that forbids both).
 */
export function renderSecurityReport(data: SecurityReportData): string {
  const e = escapeXml;
  const labels = data.signIns.map((s) =>
    data.bucket === 'hour' ? `${s.at.slice(5, 10)} ${s.at.slice(11, 13)}h` : s.at.slice(0, 10),
  );
  const charts = [
    columnChart({
      title: `Sign-ins and failures per ${data.bucket}`,
      labels,
      series: [
        { name: 'Sign-ins', color: '#2b6cb0', values: data.signIns.map((s) => s.succeeded) },
        { name: 'Failures', color: '#c53030', values: data.signIns.map((s) => s.failed) },
      ],
    }),
    barChart({
      title: 'Alerts by rule',
      color: '#dd6b20',
      rows: data.alertsByRule.map((a) => ({ label: a.rule, value: a.count })),
    }),
    barChart({
      title: 'Sensitive reads and exports by user',
      color: '#6b46c1',
      rows: data.sensitiveByUser.map((u) => ({
        label: u.name ?? u.userId,
        value: u.reads + u.exports,
      })),
    }),
    barChart({
      title: 'Top client addresses',
      color: '#2f855a',
      rows: data.topAddresses.map((a) => ({ label: a.ip, value: a.events })),
    }),
  ];
  const row = (cells: (string | number)[]) =>
    `<tr>${cells.map((c) => `<td>${e(String(c))}</td>`).join('')}</tr>`;
  const table = (head: string[], rows: (string | number)[][]) =>
    `<table><thead><tr>${head.map((h) => `<th>${e(h)}</th>`).join('')}</tr></thead><tbody>${
      rows.length === 0
        ? `<tr><td colspan="${head.length}">None in this period.</td></tr>`
        : rows.map(row).join('')
    }</tbody></table>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Security report: ${e(data.tenant.name)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a202c; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #cbd5e0; padding: 0.25rem 0.6rem; text-align: left; }
figure { margin: 1rem 0; }
</style>
</head>
<body>
<h1>Security report: ${e(data.tenant.name)} (${e(data.tenant.slug)})</h1>
<p>From ${e(data.from)} to ${e(data.to)} (UTC). ${data.totals.events} audit events,
${data.totals.signIns} sign-ins, ${data.totals.signInFailures} failed sign-ins, ${data.totals.alerts} alerts.</p>
${charts.map((c) => `<figure>${c}</figure>`).join('\n')}
<h2>Alerts by rule</h2>
${table(
  ['Rule', 'Alerts'],
  data.alertsByRule.map((a) => [a.rule, a.count]),
)}
<h2>Sensitive reads and exports by user</h2>
${table(
  ['User', 'User id', 'Sensitive reads', 'Exports'],
  data.sensitiveByUser.map((u) => [u.name ?? '', u.userId, u.reads, u.exports]),
)}
<h2>Top client addresses</h2>
${table(
  ['Address', 'Events', 'Failures'],
  data.topAddresses.map((a) => [a.ip, a.events, a.failures]),
)}
</body>
</html>
`;
}
