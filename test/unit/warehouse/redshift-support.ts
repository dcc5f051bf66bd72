// What the Redshift dialect's unit tests share: a warehouse on the fake server, a mocked S3,
// a fake clock, a batch.

import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';
import { MkpiError, type ErrorCode } from '../../../lib/domain/errors.js';
import type { GenreRow, HourlyRow } from '../../../lib/domain/kpi.js';
import type { LoadBatch } from '../../../lib/domain/warehouse.js';
import type { RetryClock } from '../../../lib/adapters/warehouse/core/retry.js';
import { RedshiftWarehouse, type RedshiftWarehouseOptions } from '../../../lib/adapters/warehouse/redshift/redshift-warehouse.js';
import { FakeRedshift } from './redshift-fake.js';

export const URL_PROVISIONED = 'redshift://etl:s3cret@my-cluster.abc123.eu-west-1.redshift.amazonaws.com:5439/analytics';
export const STAGING = 's3://stage-bucket/musickpi/staging/';
export const ROLE = 'arn:aws:iam::123456789012:role/redshift-copy';

/** Time passes only when the code under test sleeps. */
export function fakeClock(): RetryClock & { sleeps: number[] } {
  let t = 0;
  const clock = {
    sleeps: [] as number[],
    now: () => t,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      t += ms;
    },
    random: () => 0.5,
  };
  return clock;
}

export function warehouseOn(fake: FakeRedshift, extra: Partial<RedshiftWarehouseOptions> = {}, url = URL_PROVISIONED): RedshiftWarehouse {
  return new RedshiftWarehouse(url, {
    schema: 'reporting_schema',
    staging: { uri: STAGING, s3: { region: 'eu-west-1' } },
    iamRole: ROLE,
    env: {},
    runId: 'run-1',
    ...extra,
    testing: {
      newClient: fake.newClient,
      clock: fakeClock(),
      ...extra.testing,
      identity: { host: 'host-a', pid: 4242, bootId: 'boot-a', isAlive: () => true, ...extra.testing?.identity },
    },
  });
}

/** S3 mocked for one suite (restored after it: other suites talk to a real test server). */
export function mockS3(): { s3: () => AwsClientStub<S3Client> } {
  let stub: AwsClientStub<S3Client> | undefined;
  before(() => {
    stub = mockClient(S3Client);
  });
  beforeEach(() => {
    stub!.reset();
    stub!.on(PutObjectCommand).resolves({});
    stub!.on(ListObjectsV2Command).resolves({ Contents: [] });
    stub!.on(DeleteObjectCommand).resolves({});
  });
  after(() => stub!.restore());
  return { s3: () => stub! };
}

export function hourlyRows(date: string, n = 3): HourlyRow[] {
  return Array.from({ length: n }, (_, h) => ({
    listen_date: date,
    listen_hour: h,
    unique_listeners: 10 + h,
    listen_counts: 20 + h,
    top_artist: h === 0 ? null : h === 1 ? '' : `Artist "${h}", \\N`,
    avg_sessions_per_user: (20 + h) / (10 + h),
    diversity_index: 1 / 3,
    most_engaged_age_group: h === 2 ? null : '26-35',
  }));
}

export function genreRows(date: string, n = 2): GenreRow[] {
  return Array.from({ length: n }, (_, i) => ({
    listen_date: date,
    track_genre: `genre-${i},\n"x"`,
    listen_count: 100 + i,
    popularity_index: 0.5,
    average_duration: 210.5,
    most_popular_track_id: `t${i}`,
  }));
}

export function fullBatch(onStep?: LoadBatch['onStep']): LoadBatch {
  return {
    runId: 'run-1',
    hourly: { dates: ['2024-06-01', '2024-06-02'], rows: hourlyRows('2024-06-01') },
    genre: { dates: ['2024-06-01'], rows: genreRows('2024-06-01') },
    ledger: [
      {
        fileKey: 'streams/a.csv',
        fingerprint: 'f1',
        size: 10,
        rows: 3,
        dates: ['2024-06-01'],
        tables: ['hourly', 'genre'],
        runId: 'run-1',
        archivedKey: null,
        contentHash: 'a'.repeat(64),
      },
    ],
    retire: [{ fileKey: 'streams/twin.csv', fingerprint: 'old' }],
    retract: [{ fileKey: 'streams/bad.csv', fingerprint: 'f9' }],
    onStep,
  };
}

export async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<MkpiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MkpiError && e.code === code) return e;
    throw e;
  }
  throw new Error(`expected ${code}`);
}
