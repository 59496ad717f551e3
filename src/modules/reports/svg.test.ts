import { describe, expect, it } from 'vitest';
import { barChart, columnChart, escapeXml, niceMax } from './svg.ts';

describe('report charts', () => {
  it('escapes markup and drops characters XML forbids', () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe(
      '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;',
    );
    expect(escapeXml('a\u0000b\u001fc\ud800d')).toBe('a\ufffdb\ufffdc\ufffdd');
    expect(escapeXml('😀 ok')).toBe('😀 ok');
  });

  it('rounds axes to 1, 2 or 5 times a power of ten', () => {
    expect([0, 1, 3, 7, 10, 11, 42, 999].map(niceMax)).toEqual([1, 1, 5, 10, 10, 20, 50, 1000]);
  });

  it('draws one bar per value, scaled to the axis', () => {
    const svg = columnChart({
      title: 'T',
      labels: ['a', 'b'],
      series: [{ name: 'S', color: '#000', values: [5, 10] }],
      height: 136,
    });
    const heights = [...svg.matchAll(/<rect [^>]*height="([\d.]+)" fill="#000"><title>/g)].map(
      (m) => Number(m[1]),
    );
    // Plot height 136 - 28 - 36 = 72; max 10: bars of 36 and 72.
    expect(heights).toEqual([36, 72]);
    expect(barChart({ title: '<t>', rows: [], color: '#111' })).toContain('&lt;t&gt;');
  });
});
