import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

import { expect } from 'chai';

import { MkpiError } from '../../../lib/domain/errors.js';
import { LocalLake } from '../../../lib/adapters/lake/local.js';
import { openLake } from '../../../lib/adapters/lake/open.js';
import { S3Lake } from '../../../lib/adapters/lake/s3/s3-lake.js';

function usageError(uri: string): void {
  try {
    openLake(uri, {});
  } catch (err) {
    expect(err, uri).to.be.instanceOf(MkpiError);
    expect((err as MkpiError).code, uri).to.equal('MKPI_USAGE');
    return;
  }
  throw new Error(`expected MKPI_USAGE for ${uri}`);
}

describe('openLake', () => {
  const opened: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const l of opened.splice(0)) await l.close();
  });
  function open(uri: string, s3: Parameters<typeof openLake>[1] = {}): ReturnType<typeof openLake> {
    const lake = openLake(uri, s3);
    opened.push(lake);
    return lake;
  }

  it('s3://bucket/prefix is an S3Lake rooted at that prefix', () => {
    const lake = open('s3://my-bucket/data/lake/', { region: 'eu-west-1' });
    expect(lake).to.be.instanceOf(S3Lake);
    expect(lake.root).to.equal('s3://my-bucket/data/lake');
    expect((lake as S3Lake).keyPrefix).to.equal('data/lake/');
    expect((lake as S3Lake).bucket).to.equal('my-bucket');
  });

  it('s3://bucket alone is the bucket root', () => {
    const lake = open('s3://my-bucket', { endpoint: 'http://127.0.0.1:9000' });
    expect(lake.root).to.equal('s3://my-bucket');
    expect((lake as S3Lake).keyPrefix).to.equal('');
  });

  it('invalid S3 URIs are MKPI_USAGE', () => {
    for (const uri of [
      's3://',
      's3:///prefix',
      's3://UPPER/x',
      's3://a/x',
      's3://bad_bucket/x',
      's3://b-ok/../x',
      's3://b-ok/x?y',
      '',
      'gs://bucket/x',
    ]) {
      usageError(uri);
    }
  });

  it('a path or a file:// URI is a LocalLake on the resolved path', () => {
    const rel = open('fixtures/tiny');
    expect(rel).to.be.instanceOf(LocalLake);
    expect(rel.root).to.equal(path.resolve('fixtures/tiny'));
    const dir = path.resolve('some dir/with space');
    const viaUrl = open(pathToFileURL(dir).href);
    expect(viaUrl).to.be.instanceOf(LocalLake);
    expect(viaUrl.root).to.equal(dir);
  });
});
