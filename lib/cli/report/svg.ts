// Hand-written SVG charts, rendered when the page is written: no script, no font, no request.
// Every chart is a <svg role="img"> with a <title>, two axes with their units, and its values
// escaped; the page puts the table behind it right below.

export function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export const PALETTE = ['#3366cc', '#e8743b', '#19a979', '#945ecf', '#ed4a7b', '#13a4b4', '#6c8893', '#bf399e', '#f4b400', '#525df4'];
export const FAILED = '#d62728';

const W = 640;
const H = 280;
const M = { left: 60, right: 16, top: 14, bottom: 46 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;

/** Round ticks from 0 to at least max: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(max: number, target = 5, integer = false): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / target;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const nice = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  // Counts get whole steps: a tick of 0.2 listens means nothing.
  const step = integer ? Math.max(1, nice) : nice;
  const ticks: number[] = [];
  for (let t = 0; t < max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

const r1 = (n: number) => Math.round(n * 10) / 10;

interface Frame {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
}

function open(f: Frame, body: string, desc?: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${esc(f.id)}-t" class="chart">` +
    `<title id="${esc(f.id)}-t">${esc(f.title)}</title>${desc ? `<desc>${esc(desc)}</desc>` : ''}` +
    body +
    `<text x="${M.left + PW / 2}" y="${H - 6}" text-anchor="middle" class="label">${esc(f.xLabel)}</text>` +
    `<text transform="translate(14 ${M.top + PH / 2}) rotate(-90)" text-anchor="middle" class="label">${esc(f.yLabel)}</text>` +
    '</svg>'
  );
}

/** The y axis with its grid, for values from 0 to the last tick; returns the scale. */
function yAxis(ticks: number[], format: (n: number) => string): { y: (v: number) => number; svg: string } {
  const top = ticks[ticks.length - 1] || 1;
  const y = (v: number) => r1(M.top + PH - (v / top) * PH);
  const svg = ticks
    .map(
      (t) =>
        `<line x1="${M.left}" x2="${M.left + PW}" y1="${y(t)}" y2="${y(t)}" class="grid"/>` +
        `<text x="${M.left - 6}" y="${y(t) + 4}" text-anchor="end" class="tick">${esc(format(t))}</text>`,
    )
    .join('');
  return { y, svg: svg + `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + PH}" class="axis"/>` };
}

/** Category labels along the x axis, thinned so that they never overlap. */
function xAxis(labels: string[], x: (i: number) => number): string {
  const every = Math.max(1, Math.ceil(labels.length / 12));
  const ticks = labels
    .map((l, i) => (i % every === 0 ? `<text x="${x(i)}" y="${M.top + PH + 16}" text-anchor="middle" class="tick">${esc(l)}</text>` : ''))
    .join('');
  return `<line x1="${M.left}" x2="${M.left + PW}" y1="${M.top + PH}" y2="${M.top + PH}" class="axis"/>${ticks}`;
}

function legend(items: { name: string; color: string }[]): string {
  let x = M.left + 4;
  return items
    .map((it) => {
      const g =
        `<rect x="${x}" y="${M.top}" width="10" height="10" fill="${it.color}"/>` +
        `<text x="${x + 14}" y="${M.top + 9}" class="tick">${esc(it.name)}</text>`;
      x += 24 + it.name.length * 6.5;
      return g;
    })
    .join('');
}

export interface Series {
  name: string;
  values: number[];
}

/** Lines over categories (hours): one per series, with a dot on each value. */
export function lineChart(f: Frame & { labels: string[]; series: Series[]; format: (n: number) => string; integer?: boolean }): string {
  const max = Math.max(0, ...f.series.flatMap((s) => s.values));
  const { y, svg: ys } = yAxis(niceTicks(max, 5, f.integer), f.format);
  const n = f.labels.length;
  const x = (i: number) => r1(M.left + 20 + (n <= 1 ? (PW - 40) / 2 : (i / (n - 1)) * (PW - 40)));
  const lines = f.series
    .map((s, k) => {
      const pts = s.values.map((v, i) => `${x(i)},${y(v)}`).join(' ');
      const dots = s.values
        .map(
          (v, i) => `<circle cx="${x(i)}" cy="${y(v)}" r="2.5"><title>${esc(`${f.labels[i]}: ${f.format(v)} ${s.name}`)}</title></circle>`,
        )
        .join('');
      return `<g fill="${PALETTE[k]}" stroke="${PALETTE[k]}"><polyline points="${pts}" fill="none" stroke-width="2"/>${dots}</g>`;
    })
    .join('');
  return open(f, ys + xAxis(f.labels, x) + lines + legend(f.series.map((s, k) => ({ name: s.name, color: PALETTE[k] }))));
}

/** Vertical bars over categories; stacked when there are several series. */
export function barChart(
  f: Frame & { labels: string[]; series: Series[]; format: (n: number) => string; colors?: string[]; empty?: string; integer?: boolean },
): string {
  const totals = f.labels.map((_, i) => f.series.reduce((a, s) => a + (s.values[i] ?? 0), 0));
  const { y, svg: ys } = yAxis(niceTicks(Math.max(0, ...totals), 5, f.integer), f.format);
  const n = Math.max(1, f.labels.length);
  const band = PW / n;
  const x = (i: number) => r1(M.left + band * (i + 0.5));
  const bw = r1(Math.max(1, band * 0.7));
  let bars = '';
  f.labels.forEach((label, i) => {
    let base = 0;
    f.series.forEach((s, k) => {
      const v = s.values[i] ?? 0;
      if (v <= 0) return;
      const color = f.colors?.[i] ?? PALETTE[k % PALETTE.length];
      bars +=
        `<rect x="${r1(x(i) - bw / 2)}" y="${y(base + v)}" width="${bw}" height="${r1(y(base) - y(base + v))}" fill="${color}">` +
        `<title>${esc(`${label}: ${f.format(v)}${f.series.length > 1 ? ' ' + s.name : ''}`)}</title></rect>`;
      base += v;
    });
  });
  const none =
    totals.every((t) => t === 0) && f.empty
      ? `<text x="${M.left + PW / 2}" y="${M.top + PH / 2}" text-anchor="middle" class="label">${esc(f.empty)}</text>`
      : '';
  const keys = f.series.length > 1 ? legend(f.series.map((s, k) => ({ name: s.name, color: PALETTE[k % PALETTE.length] }))) : '';
  return open(f, ys + xAxis(f.labels, x) + bars + none + keys);
}

/** Horizontal bars, one per category, longest first (a ranking). */
export function rankChart(f: Frame & { labels: string[]; values: number[]; format: (n: number) => string }): string {
  const left = 130;
  const pw = W - left - M.right;
  const ticks = niceTicks(Math.max(0, ...f.values), 4);
  const top = ticks[ticks.length - 1] || 1;
  const x = (v: number) => r1(left + (v / top) * pw);
  const band = PH / Math.max(1, f.labels.length);
  const grid = ticks
    .map(
      (t) =>
        `<line x1="${x(t)}" x2="${x(t)}" y1="${M.top}" y2="${M.top + PH}" class="grid"/>` +
        `<text x="${x(t)}" y="${M.top + PH + 16}" text-anchor="middle" class="tick">${esc(f.format(t))}</text>`,
    )
    .join('');
  const bars = f.labels
    .map((l, i) => {
      const yy = r1(M.top + band * i + band * 0.15);
      const h = r1(band * 0.7);
      return (
        `<text x="${left - 6}" y="${r1(yy + h / 2 + 4)}" text-anchor="end" class="tick">${esc(l.length > 20 ? l.slice(0, 19) + '…' : l)}</text>` +
        `<rect x="${left}" y="${yy}" width="${r1(x(f.values[i]) - left)}" height="${h}" fill="${PALETTE[0]}"><title>${esc(`${l}: ${f.format(f.values[i])}`)}</title></rect>`
      );
    })
    .join('');
  const axes =
    `<line x1="${left}" x2="${left}" y1="${M.top}" y2="${M.top + PH}" class="axis"/>` +
    `<line x1="${left}" x2="${left + pw}" y1="${M.top + PH}" y2="${M.top + PH}" class="axis"/>`;
  return open(f, grid + axes + bars).replace(
    // The y label of a ranking sits left of the category names.
    `translate(14 ${M.top + PH / 2})`,
    `translate(12 ${M.top + PH / 2})`,
  );
}

/** One dot per x category at the row of its y category (which group led each hour). */
export function dotChart(f: Frame & { labels: string[]; rows: string[]; values: (string | null)[] }): string {
  const left = 70;
  const pw = W - left - M.right;
  const n = f.labels.length;
  const x = (i: number) => r1(left + 20 + (n <= 1 ? (pw - 40) / 2 : (i / (n - 1)) * (pw - 40)));
  const band = PH / Math.max(1, f.rows.length);
  const y = (k: number) => r1(M.top + band * (k + 0.5));
  const rows = f.rows
    .map(
      (r, k) =>
        `<line x1="${left}" x2="${left + pw}" y1="${y(k)}" y2="${y(k)}" class="grid"/>` +
        `<text x="${left - 6}" y="${y(k) + 4}" text-anchor="end" class="tick">${esc(r)}</text>`,
    )
    .join('');
  const every = Math.max(1, Math.ceil(n / 12));
  const xs = f.labels
    .map((l, i) => (i % every === 0 ? `<text x="${x(i)}" y="${M.top + PH + 16}" text-anchor="middle" class="tick">${esc(l)}</text>` : ''))
    .join('');
  const dots = f.values
    .map((v, i) => {
      const k = v === null ? -1 : f.rows.indexOf(v);
      return k < 0
        ? ''
        : `<circle cx="${x(i)}" cy="${y(k)}" r="5" fill="${PALETTE[k % PALETTE.length]}"><title>${esc(`${f.labels[i]}: ${v}`)}</title></circle>`;
    })
    .join('');
  const axes =
    `<line x1="${left}" x2="${left}" y1="${M.top}" y2="${M.top + PH}" class="axis"/>` +
    `<line x1="${left}" x2="${left + pw}" y1="${M.top + PH}" y2="${M.top + PH}" class="axis"/>`;
  return open(f, rows + axes + xs + dots);
}
