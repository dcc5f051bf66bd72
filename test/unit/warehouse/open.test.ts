// openWarehouse's precedence and URL checks. None of these cases connects or starts a server
// (the embedded branch is covered in test/integration/embedded.test.ts).

import assert from 'node:assert/strict';
import { MkpiError } from '../../../lib/domain/errors.js';
import { openWarehouse } from '../../../lib/adapters/warehouse/open.js';

const home = '/nonexistent/musickpi-home-never-used';

async function describeOf(warehouse: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  const opened = await openWarehouse({ warehouse, env, schema: 'reporting_schema', home });
  try {
    assert.equal(opened.embedded, false);
    return opened.warehouse.description;
  } finally {
    await opened.stop();
    await opened.stop();
  }
}

async function configError(p: Promise<unknown>): Promise<MkpiError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof MkpiError);
    assert.equal(e.code, 'MKPI_CONFIG', e.message);
    return e;
  }
  assert.fail('expected MKPI_CONFIG');
}

describe('warehouse/open (unit)', () => {
  it('--warehouse beats DATABASE_URL beats PG* variables', async () => {
    const env = { DATABASE_URL: 'postgres://env@envhost:5432/envdb', PGHOST: 'pghost', PGUSER: 'pguser' };
    assert.equal(await describeOf('postgresql://flag:pw@flaghost:1/flagdb', env), 'postgresql://flag@flaghost:1/flagdb');
    assert.equal(await describeOf(undefined, env), 'postgres://env@envhost:5432/envdb');
    assert.equal(await describeOf('  ', env), 'postgres://env@envhost:5432/envdb');
    assert.equal(
      await describeOf(undefined, { PGHOST: 'pghost', PGPORT: '6543', PGUSER: 'pguser', PGDATABASE: 'kpis', PGPASSWORD: 'x' }),
      'postgresql://pguser@pghost:6543/kpis',
    );
  });

  it('any single PG* variable selects a PostgreSQL from the environment', async () => {
    for (const v of ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD']) {
      const d = await describeOf(undefined, { [v]: v === 'PGPORT' ? '5433' : 'x' });
      assert.match(d, /^postgresql:\/\//, v);
    }
  });

  it('refuses other schemes, Redshift explicitly, without echoing a password', async () => {
    const rs = await configError(openWarehouse({ warehouse: 'redshift://u:topsecret@cluster:5439/dev', env: {}, schema: 's', home }));
    assert.match(rs.message, /not supported yet/);
    assert.ok(!rs.message.includes('topsecret'));
    for (const url of ['mysql://u:topsecret@h/db', 'http://h/db', 'localhost:5432', 'just words']) {
      const e = await configError(openWarehouse({ warehouse: url, env: {}, schema: 's', home }));
      assert.ok(!e.message.includes('topsecret'), e.message);
    }
    await configError(openWarehouse({ env: { DATABASE_URL: 'sqlite:///tmp/x.db' }, schema: 's', home }));
  });

  it('validates the schema before anything else', async () => {
    await configError(openWarehouse({ warehouse: 'postgres://h/db', env: {}, schema: 'bad-name', home }));
    // Even with nothing configured: no server is started for a bad schema.
    await configError(openWarehouse({ env: {}, schema: 'x"y', home }));
  });

  it('refuses a PGPORT that is not a port', async () => {
    await configError(openWarehouse({ env: { PGPORT: 'five' }, schema: 's', home }));
  });
});
