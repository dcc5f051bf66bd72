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

  it('refuses other schemes without echoing a password', async () => {
    for (const url of ['mysql://u:topsecret@h/db', 'http://h/db', 'localhost:5432', 'just words']) {
      const e = await configError(openWarehouse({ warehouse: url, env: {}, schema: 's', home }));
      assert.ok(!e.message.includes('topsecret'), e.message);
    }
    await configError(openWarehouse({ env: { DATABASE_URL: 'sqlite:///tmp/x.db' }, schema: 's', home }));
  });

  it('opens redshift:// from --warehouse or DATABASE_URL, with the staging location it needs', async () => {
    const redshift = { staging: 's3://lake/_musickpi/staging/', iamRole: 'arn:aws:iam::123456789012:role/copy' };
    const url = 'redshift://etl:topsecret@my-cluster.abc123.eu-west-1.redshift.amazonaws.com:5439/analytics';
    const flag = await openWarehouse({ warehouse: url, env: {}, schema: 's', home, redshift });
    assert.equal(flag.embedded, false);
    assert.equal(flag.warehouse.description, 'redshift://etl@my-cluster.abc123.eu-west-1.redshift.amazonaws.com:5439/analytics');
    await flag.stop();
    const env = await openWarehouse({
      env: { DATABASE_URL: 'redshift://etl@127.0.0.1:5439/dev?sslmode=disable' },
      schema: 's',
      home,
      redshift,
    });
    assert.equal(env.warehouse.description, 'redshift://etl@127.0.0.1:5439/dev');
    await env.stop();
    // With IAM, the password comes from AWS, and the cluster may be named.
    const iam = await openWarehouse({
      warehouse: 'redshift://etl@10.0.0.1:5439/dev',
      env: {},
      schema: 's',
      home,
      redshift: { ...redshift, iam: true, clusterId: 'kpi' },
    });
    await iam.stop();
  });

  it('a Redshift URL without a staging location, or a bad one, is MKPI_CONFIG naming --staging; nothing echoes the password', async () => {
    const url = 'redshift://etl:topsecret@cluster.abc.eu-west-1.redshift.amazonaws.com:5439/dev';
    const none = await configError(openWarehouse({ warehouse: url, env: {}, schema: 's', home }));
    assert.match(none.hint ?? '', /--staging s3:\/\/bucket\/prefix\//);
    assert.ok(!`${none.message}${none.hint}`.includes('topsecret'));
    await configError(openWarehouse({ warehouse: url, env: {}, schema: 's', home, redshift: { staging: '/tmp/local' } }));
    await configError(
      openWarehouse({ warehouse: url, env: {}, schema: 's', home, redshift: { staging: 's3://b/p/', iamRole: 'not-an-arn' } }),
    );
    const bad = await configError(openWarehouse({ warehouse: 'redshift://etl:top#secret@h/dev', env: {}, schema: 's', home }));
    assert.ok(!bad.message.includes('secret'), bad.message);
    await configError(
      openWarehouse({ warehouse: 'redshift://etl@h/dev?sslmode=prefer', env: {}, schema: 's', home, redshift: { staging: 's3://b/p/' } }),
    );
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
