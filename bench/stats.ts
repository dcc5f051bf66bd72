// Medians and the way figures are printed.

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const fmtS = (ms: number) => `${(ms / 1000).toFixed(ms < 100 ? 3 : 2)} s`;
export const fmtMb = (mb: number) => `${mb.toFixed(0)} MB`;
export const fmtRatio = (x: number) => `${x.toFixed(2)}×`;
export const fmtRate = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);

export interface Series {
  name: string;
  walls: number[];
  rss: number[];
  cpu: number[];
}

export function avgTimings(list: Record<string, number>[]): Record<string, number> {
  const keys = new Set(list.flatMap((t) => Object.keys(t)));
  return Object.fromEntries([...keys].map((k) => [k, median(list.map((t) => t[k] ?? 0))]));
}
