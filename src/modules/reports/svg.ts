/**
 * Small SVG charts rendered on the server: the report must open in a browser with scripts
 * disabled and under a strict content security policy, so no charting script runs client-side.
 * Every text that reaches the markup goes through `escapeXml`.
 */

const FONT = 'font-family="system-ui, sans-serif" font-size="11"';

export function escapeXml(text: string): string {
  // Characters XML 1.0 forbids (C0 controls but tab/newline/return, lone surrogates,
  // U+FFFE/U+FFFF) would make the whole document unreadable: they become U+FFFD.
  return (
    text
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd')
      .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&#39;')
  );
}

/** A round upper bound for an axis: 1, 2 or 5 times a power of ten. */
export function niceMax(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

export interface Series {
  name: string;
  color: string;
  values: number[];
}

/** Grouped vertical bars over time (one group per label). */
export function columnChart(options: {
  title: string;
  labels: string[];
  series: Series[];
  width?: number;
  height?: number;
}): string {
  const width = options.width ?? 720;
  const height = options.height ?? 240;
  const left = 44;
  const bottom = 36;
  const top = 28;
  const plotW = width - left - 12;
  const plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...options.series.flatMap((s) => s.values)));
  const groups = Math.max(1, options.labels.length);
  const groupW = plotW / groups;
  const barW = Math.max(1, (groupW * 0.8) / Math.max(1, options.series.length));
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const parts: string[] = [];
  for (const tick of [0, 0.5, 1]) {
    const v = max * tick;
    parts.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${fmt(y(v))}" y2="${fmt(y(v))}" stroke="#ddd"/>`,
      `<text x="${left - 4}" y="${fmt(y(v) + 4)}" text-anchor="end" ${FONT}>${fmtCount(v)}</text>`,
    );
  }
  options.series.forEach((s, si) => {
    s.values.forEach((v, i) => {
      const x = left + i * groupW + groupW * 0.1 + si * barW;
      parts.push(
        `<rect x="${fmt(x)}" y="${fmt(y(v))}" width="${fmt(barW)}" height="${fmt(top + plotH - y(v))}" fill="${s.color}"><title>${escapeXml(`${options.labels[i] ?? ''} ${s.name}: ${v}`)}</title></rect>`,
      );
    });
  });
  // At most about twelve axis labels, evenly spaced.
  const every = Math.max(1, Math.ceil(options.labels.length / 12));
  options.labels.forEach((label, i) => {
    if (i % every !== 0) return;
    const x = left + i * groupW + groupW / 2;
    parts.push(
      `<text x="${fmt(x)}" y="${height - bottom + 14}" text-anchor="middle" ${FONT}>${escapeXml(label)}</text>`,
    );
  });
  options.series.forEach((s, si) => {
    const x = left + si * 140;
    parts.push(
      `<rect x="${x}" y="${height - 14}" width="10" height="10" fill="${s.color}"/>`,
      `<text x="${x + 14}" y="${height - 5}" ${FONT}>${escapeXml(s.name)}</text>`,
    );
  });
  return svg(width, height, options.title, parts);
}

/** Horizontal bars, one per row, longest first as given. */
export function barChart(options: {
  title: string;
  rows: { label: string; value: number }[];
  color: string;
  width?: number;
}): string {
  const width = options.width ?? 720;
  const rowH = 22;
  const top = 28;
  const labelW = 260;
  const height = top + Math.max(1, options.rows.length) * rowH + 8;
  const plotW = width - labelW - 60;
  const max = niceMax(Math.max(0, ...options.rows.map((r) => r.value)));
  const parts: string[] = [];
  if (options.rows.length === 0) {
    parts.push(`<text x="${labelW}" y="${top + 14}" ${FONT}>No events in this period.</text>`);
  }
  options.rows.forEach((row, i) => {
    const y = top + i * rowH;
    const w = (row.value / max) * plotW;
    parts.push(
      `<text x="${labelW - 6}" y="${y + 14}" text-anchor="end" ${FONT}>${escapeXml(truncate(row.label, 40))}</text>`,
      `<rect x="${labelW}" y="${y + 3}" width="${fmt(w)}" height="${rowH - 6}" fill="${options.color}"><title>${escapeXml(`${row.label}: ${row.value}`)}</title></rect>`,
      `<text x="${fmt(labelW + w + 4)}" y="${y + 14}" ${FONT}>${row.value}</text>`,
    );
  });
  return svg(width, height, options.title, parts);
}

function svg(width: number, height: number, title: string, parts: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}">`,
    `<title>${escapeXml(title)}</title>`,
    `<text x="4" y="16" font-family="system-ui, sans-serif" font-size="13" font-weight="bold">${escapeXml(title)}</text>`,
    ...parts,
    '</svg>',
  ].join('\n');
}

function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));
const fmtCount = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));
