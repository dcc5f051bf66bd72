// Where a Redshift session's credentials come from: IAM temporary credentials fetched just
// before connecting (GetClusterCredentials for a provisioned cluster, GetCredentials for a
// Serverless workgroup; the cluster or workgroup and the region read from the endpoint's name),
// or a password from the URL, PGPASSWORD or ~/.pgpass.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetClusterCredentialsCommand, RedshiftClient } from '@aws-sdk/client-redshift';
import { GetCredentialsCommand, RedshiftServerlessClient } from '@aws-sdk/client-redshift-serverless';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';
import { MkpiError } from '../../../lib/domain/errors.js';
import { IamCredentials, iamTarget, passwordFromEnv, pgpassLookup } from '../../../lib/adapters/warehouse/redshift/credentials.js';
import { parseRedshiftUrl } from '../../../lib/adapters/warehouse/redshift/url.js';
import { FakeRedshift, serverError } from './redshift-fake.js';
import { mockS3, rejects, warehouseOn } from './redshift-support.js';

const PROVISIONED = 'redshift://etl@my-cluster.abc123.eu-west-1.redshift.amazonaws.com:5439/analytics';
const SERVERLESS = 'redshift://ignored@kpi-wg.123456789012.us-east-2.redshift-serverless.amazonaws.com:5439/dev';

describe('warehouse/redshift: credentials', () => {
  mockS3();
  let redshift: AwsClientStub<RedshiftClient>;
  let serverless: AwsClientStub<RedshiftServerlessClient>;
  before(() => {
    redshift = mockClient(RedshiftClient);
    serverless = mockClient(RedshiftServerlessClient);
  });
  beforeEach(() => {
    redshift.reset();
    serverless.reset();
  });
  after(() => {
    redshift.restore();
    serverless.restore();
  });

  it('provisioned: GetClusterCredentials for the cluster of the host, in its region, just before connecting', async () => {
    redshift
      .on(GetClusterCredentialsCommand)
      .resolves({ DbUser: 'IAM:etl', DbPassword: 'tmp-Pa55', Expiration: new Date(Date.now() + 900_000) });
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake, { iam: {} }, PROVISIONED);
    assert.equal(redshift.calls().length, 0, 'nothing fetched before a connection is needed');
    await wh.isInitialised();
    assert.equal(redshift.commandCalls(GetClusterCredentialsCommand).length, 1);
    const call = redshift.commandCalls(GetClusterCredentialsCommand)[0];
    assert.deepEqual(call.args[0].input, {
      ClusterIdentifier: 'my-cluster',
      DbUser: 'etl',
      DbName: 'analytics',
      DurationSeconds: 900,
      AutoCreate: false,
    });
    assert.equal(await (call.thisValue as RedshiftClient).config.region(), 'eu-west-1');
    assert.equal(fake.configs[0].user, 'IAM:etl');
    assert.equal(fake.configs[0].password, 'tmp-Pa55');
    // Reused while valid: the run lock's session does not ask again.
    const lock = await wh.acquireRunLock();
    assert.equal(redshift.commandCalls(GetClusterCredentialsCommand).length, 1);
    // The temporary password is a secret like any other.
    fake.failWith = (s) => (s.sql.startsWith('SELECT table_name FROM') ? serverError('XX000', 'boom for IAM:etl / tmp-Pa55') : undefined);
    const e = await rejects(wh.isInitialised(), 'MKPI_INTERNAL');
    assert.ok(!e.message.includes('tmp-Pa55'), e.message);
    fake.failWith = undefined;
    await lock.release();
    await wh.close();
  });

  it('--redshift-cluster-id and a region win over the host (a custom DNS name or a tunnel)', async () => {
    redshift.on(GetClusterCredentialsCommand).resolves({ DbUser: 'IAM:etl', DbPassword: 'p', Expiration: new Date(Date.now() + 900_000) });
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(
      fake,
      { iam: { clusterId: 'prod-kpi', region: 'us-west-2' } },
      'redshift://etl@127.0.0.1:5439/analytics?sslmode=disable',
    );
    await wh.isInitialised();
    const call = redshift.commandCalls(GetClusterCredentialsCommand)[0];
    assert.equal(call.args[0].input.ClusterIdentifier, 'prod-kpi');
    assert.equal(await (call.thisValue as RedshiftClient).config.region(), 'us-west-2');
    await wh.close();
    // Without a cluster id, a host that does not name one cannot be served.
    assert.throws(
      () => warehouseOn(new FakeRedshift(), { iam: {} }, 'redshift://etl@127.0.0.1:5439/analytics'),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG' && /--redshift-cluster-id/.test(e.hint ?? ''),
    );
  });

  it('Serverless: GetCredentials for the workgroup of the host; the database user comes from IAM', async () => {
    serverless
      .on(GetCredentialsCommand)
      .resolves({ dbUser: 'IAMR:etl-role', dbPassword: 'sls-pw', expiration: new Date(Date.now() + 900_000) });
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake, { iam: {} }, SERVERLESS);
    await wh.isInitialised();
    const call = serverless.commandCalls(GetCredentialsCommand)[0];
    assert.deepEqual(call.args[0].input, { workgroupName: 'kpi-wg', dbName: 'dev', durationSeconds: 900 });
    assert.equal(await (call.thisValue as RedshiftServerlessClient).config.region(), 'us-east-2');
    assert.equal(redshift.calls().length, 0);
    assert.equal(fake.configs[0].user, 'IAMR:etl-role');
    assert.equal(fake.configs[0].password, 'sls-pw');
    await wh.close();
  });

  it('expired credentials are fetched again', async () => {
    let t = 1_000_000;
    redshift
      .on(GetClusterCredentialsCommand)
      .resolvesOnce({ DbUser: 'IAM:etl', DbPassword: 'one', Expiration: new Date(t + 120_000) })
      .resolvesOnce({ DbUser: 'IAM:etl', DbPassword: 'two', Expiration: new Date(t + 900_000) });
    const creds = new IamCredentials(iamTarget(parseRedshiftUrl(PROVISIONED), {}), 900, () => t);
    assert.equal((await creds.get()).password, 'one');
    t += 30_000;
    assert.equal((await creds.get()).password, 'one');
    t += 40_000; // within a minute of the expiry
    assert.equal((await creds.get()).password, 'two');
  });

  it('refusals are MKPI_CONFIG with a hint; throttling and outages are MKPI_WAREHOUSE_UNAVAILABLE', async () => {
    redshift.on(GetClusterCredentialsCommand).rejects(
      Object.assign(new Error('User is not authorized to perform: redshift:GetClusterCredentials'), {
        name: 'AccessDenied',
        $metadata: { httpStatusCode: 403 },
      }),
    );
    const wh = warehouseOn(new FakeRedshift().initialised(), { iam: {} }, PROVISIONED);
    const e = await rejects(wh.isInitialised(), 'MKPI_CONFIG');
    assert.match(e.hint ?? '', /redshift:GetClusterCredentials/);
    await wh.close();
    redshift.reset();
    redshift
      .on(GetClusterCredentialsCommand)
      .rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: { httpStatusCode: 400 } }));
    const wh2 = warehouseOn(new FakeRedshift().initialised(), { iam: {} }, PROVISIONED);
    const e2 = await rejects(wh2.isInitialised(), 'MKPI_WAREHOUSE_UNAVAILABLE');
    assert.equal(e2.details?.retryable, true);
    await wh2.close();
  });

  it('IAM for a provisioned cluster needs the database user in the URL', () => {
    assert.throws(
      () => iamTarget(parseRedshiftUrl('redshift://my-cluster.abc123.eu-west-1.redshift.amazonaws.com/analytics'), {}),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG',
    );
    assert.deepEqual(iamTarget(parseRedshiftUrl(PROVISIONED), { workgroup: 'wg' }), {
      kind: 'serverless',
      workgroup: 'wg',
      region: 'eu-west-1',
      database: 'analytics',
    });
  });

  describe('passwords', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'mkpi-pgpass-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));
    const target = { host: 'h.example', port: 5439, database: 'analytics', user: 'etl' };

    it('PGPASSWORD first, then the pgpass file (PGPASSFILE or ~/.pgpass) as libpq reads it', () => {
      const file = path.join(dir, '.pgpass');
      writeFileSync(
        file,
        ['# comment', 'other:5439:analytics:etl:nope', 'h.example:5439:*:etl:pa\\:ss\\\\', '*:*:*:*:fallback'].join('\n'),
      );
      chmodSync(file, 0o600);
      assert.equal(passwordFromEnv({ PGPASSWORD: 'env-pw', HOME: dir }, target), 'env-pw');
      assert.equal(passwordFromEnv({ HOME: dir }, target), 'pa:ss\\');
      assert.equal(passwordFromEnv({ PGPASSFILE: file, HOME: '/nonexistent' }, { ...target, user: 'bob' }), 'fallback');
      // Readable by others: ignored, as libpq does.
      chmodSync(file, 0o644);
      assert.equal(passwordFromEnv({ HOME: dir }, target), undefined);
      assert.equal(pgpassLookup('a:1:b:c:d', { host: 'a', port: 1, database: 'b', user: 'x' }), undefined);
    });

    it('the warehouse takes its password from the environment it is given, and keeps it out of messages', async () => {
      const fake = new FakeRedshift().initialised();
      fake.failWith = () => serverError('28P01', 'password authentication failed for user "etl" (hunter2)');
      const wh = warehouseOn(fake, { env: { PGPASSWORD: 'hunter2' } }, 'redshift://etl@h.example:5439/analytics');
      const e = await rejects(wh.isInitialised(), 'MKPI_CONFIG');
      assert.equal(fake.configs[0].password, 'hunter2');
      assert.ok(!`${e.message}${e.hint}`.includes('hunter2'));
      assert.match(e.hint ?? '', /PGPASSWORD/);
      await wh.close();
    });
  });
});
