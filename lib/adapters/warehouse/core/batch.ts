// The shape a load batch must have before any of it reaches the warehouse.

import { MkpiError } from '../../../domain/errors.js';
import { KPI_TABLES } from '../../../domain/kpi.js';
import { type LoadBatch } from '../../../domain/warehouse.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Rows outside the covered dates would be inserted without their date being cleared first. */
export function checkBatch(batch: LoadBatch): void {
  for (const table of KPI_TABLES) {
    const part = batch[table];
    if (!part) continue;
    const covered = new Set(part.dates);
    for (const d of part.dates) {
      if (!DATE.test(d)) throw new MkpiError('MKPI_INTERNAL', `load batch: ${table} covers an invalid date ${JSON.stringify(d)}`);
    }
    for (const row of part.rows) {
      if (!covered.has(row.listen_date)) {
        throw new MkpiError(
          'MKPI_INTERNAL',
          `load batch: a ${table} row has listen_date ${JSON.stringify(row.listen_date)} outside the covered dates`,
        );
      }
    }
  }
}
