/**
 * A hand-written SVG line chart of output tokens/s against the number of distinct adapters
 * (log2 x axis: 1, 4, 16, 64, 256), one line per (distribution, concurrency), with the
 * base-only run of the same concurrency as a dashed horizontal line. No dependencies.
 */
import type { ScenarioStats } from './client.ts';

export interface PlotSeries {
  label: string;
  color: string;
  dashed?: boolean;
  points: Array<{ x: number; y: number }>;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Series from a run's scenarios: `lora{n}-{dist}-c{conc}` lines and `base-{conc}` levels. */
export function adapterSeries(stats: ScenarioStats[]): PlotSeries[] {
  const colors: Record<string, string> = { 'uniform-16': '#1f77b4', 'zipf-16': '#ff7f0e', 'uniform-64': '#2ca02c', 'zipf-64': '#d62728' };
  const lines = new Map<string, PlotSeries>();
  const xs = new Set<number>();
  const one = new Map<number, number>(); // conc -> tok/s of lora1 (both distributions start there)
  for (const s of stats) {
    const m = /^lora(\d+)-(uniform|zipf)-c(\d+)$/.exec(s.scenario);
    if (!m || s.ok === 0) continue;
    const [n, dist, conc] = [Number(m[1]), m[2], Number(m[3])];
    xs.add(n);
    if (n === 1) one.set(conc, s.outputTokensPerSec);
    const key = `${dist}-${conc}`;
    let line = lines.get(key);
    if (!line) lines.set(key, (line = { label: `${dist}, ${conc} streams`, color: colors[key] ?? '#555', points: [] }));
    line.points.push({ x: n, y: s.outputTokensPerSec });
  }
  for (const [key, line] of lines) {
    const conc = Number(key.split('-')[1]);
    if (key.startsWith('zipf') && one.has(conc) && !line.points.some((p) => p.x === 1)) line.points.push({ x: 1, y: one.get(conc)! });
    line.points.sort((a, b) => a.x - b.x);
  }
  const out = [...lines.values()];
  const xsSorted = [...xs].sort((a, b) => a - b);
  for (const conc of [16, 64]) {
    const b = stats.find((s) => s.scenario === `base-${conc}` && s.ok > 0);
    if (b && xsSorted.length)
      out.push({
        label: `base only, ${conc} streams`,
        color: conc === 16 ? '#1f77b4' : '#2ca02c',
        dashed: true,
        points: [{ x: xsSorted[0], y: b.outputTokensPerSec }, { x: xsSorted[xsSorted.length - 1], y: b.outputTokensPerSec }],
      });
  }
  return out;
}

/** Render the chart; `subtitle` carries machine facts (load average, commit). */
export function renderSvg(series: PlotSeries[], title: string, subtitle: string): string {
  const W = 760;
  const H = 440;
  const L = 70;
  const R = 220;
  const T = 56;
  const B = 50;
  const all = series.flatMap((s) => s.points);
  const xs = [...new Set(all.map((p) => p.x))].sort((a, b) => a - b);
  const lx = (x: number) => Math.log2(x);
  const xmin = xs.length ? lx(xs[0]) : 0;
  const xmax = xs.length > 1 ? lx(xs[xs.length - 1]) : xmin + 1;
  const ymaxRaw = Math.max(1, ...all.map((p) => p.y));
  const step = Math.pow(10, Math.floor(Math.log10(ymaxRaw))) / (ymaxRaw / Math.pow(10, Math.floor(Math.log10(ymaxRaw))) < 2.5 ? 4 : 2);
  const ymax = Math.ceil((ymaxRaw * 1.08) / step) * step;
  const px = (x: number) => L + ((lx(x) - xmin) / (xmax - xmin || 1)) * (W - L - R);
  const py = (y: number) => H - B - (y / ymax) * (H - T - B);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="${L}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
  o.push(`<text x="${L}" y="40" fill="#555">${esc(subtitle)}</text>`);
  for (let y = 0; y <= ymax + 1e-9; y += step) {
    o.push(`<line x1="${L}" x2="${W - R}" y1="${py(y).toFixed(1)}" y2="${py(y).toFixed(1)}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${L - 6}" y="${(py(y) + 4).toFixed(1)}" text-anchor="end">${Math.round(y)}</text>`);
  }
  for (const x of xs) {
    o.push(`<line x1="${px(x).toFixed(1)}" x2="${px(x).toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#f0f0f0"/>`);
    o.push(`<text x="${px(x).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${x}</text>`);
  }
  o.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/>`);
  o.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">distinct adapters (log scale)</text>`);
  o.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">output tokens/s</text>`);
  series.forEach((s, i) => {
    const d = s.points.map((p, k) => `${k ? 'L' : 'M'}${px(p.x).toFixed(1)} ${py(p.y).toFixed(1)}`).join(' ');
    o.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (!s.dashed) for (const p of s.points) o.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(`${s.label}: ${p.x} adapters, ${p.y.toFixed(0)} tok/s`)}</title></circle>`);
    const ly = T + 10 + i * 20;
    o.push(`<line x1="${W - R + 14}" x2="${W - R + 40}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    o.push(`<text x="${W - R + 46}" y="${ly + 4}">${esc(s.label)}</text>`);
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}
