// Numbers rounded for people (full precision stays in --json and `query`).

export const count = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(n));
export const fixed = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(digits) : String(n));
export const percent = (share: number): string => `${(share * 100).toFixed(1)}%`;
export const hour = (h: number): string => String(h).padStart(2, '0') + ':00';

/** Seconds as m:ss (a track's length). */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return String(seconds);
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** A run's time: seconds with one decimal under a minute, else m:ss. */
export function elapsed(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : duration(ms / 1000);
}

/** An instant to the second, in UTC, as people write it. */
export const instant = (iso: string): string => iso.slice(0, 19).replace('T', ' ') + 'Z';

/** The dates of a report as one phrase: one date, a range of consecutive ones, or a list. */
export function datesText(dates: readonly string[]): string {
  if (dates.length === 0) return 'no date';
  if (dates.length === 1) return dates[0];
  const day = (d: string) => Date.parse(d + 'T00:00:00Z') / 86_400_000;
  const consecutive = dates.every((d, i) => i === 0 || day(d) === day(dates[i - 1]) + 1);
  return consecutive ? `${dates[0]} to ${dates[dates.length - 1]}` : dates.join(', ');
}

export function rejectTotal(rejects: Record<string, number>): number {
  return Object.values(rejects).reduce((a, b) => a + b, 0);
}
