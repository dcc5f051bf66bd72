// Mocha global fixtures: one PostgreSQL for the whole run. The URL goes into
// MKPI_TEST_PG_URL so spawned CLI processes (e2e) and mocha workers can reach it too.

import { startTestPostgres, stopTestPostgres } from './pg.js';

export async function mochaGlobalSetup(): Promise<void> {
  await startTestPostgres();
}

export async function mochaGlobalTeardown(): Promise<void> {
  await stopTestPostgres();
}
