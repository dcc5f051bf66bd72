// Type parsing: dates stay calendar strings (a JS Date would shift with the local time zone),
// counts come back as numbers unless they would lose precision.

import { pgModule } from './pg.js';

const OID = { INT8: 20, NUMERIC: 1700, DATE: 1082 } as const;

export function parseInt8(text: string): number | string {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}

export function parseNumeric(text: string): number | string {
  const n = Number(text);
  if (Number.isNaN(n) && text !== 'NaN') return text;
  // An integral value beyond 2^53 would silently change; fractions are floats by nature.
  if (/^-?\d+$/.test(text) && !Number.isSafeInteger(n)) return text;
  return n;
}

export const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (format === undefined || format === 'text') {
      if (oid === OID.DATE) return (v: string) => v;
      if (oid === OID.INT8) return parseInt8;
      if (oid === OID.NUMERIC) return parseNumeric;
    }
    return (pgModule().types.getTypeParser as (o: number, f?: string) => unknown)(oid, format);
  },
};
