import { expect } from 'chai';
import { closestOption, envName, resolveConfig } from '../../../lib/cli/config.js';
import { MkpiError } from '../../../lib/domain/errors.js';

function usageCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(MkpiError);
    return (err as MkpiError).code;
  }
  throw new Error('expected a failure');
}

const HOME = { HOME: '/home/u' };

describe('config: flags > MUSICKPI_* > defaults', () => {
  it('a flag beats its variable, the variable beats the default', () => {
    const env = { ...HOME, MUSICKPI_MAX_BAD_ROWS: '7', MUSICKPI_LAKE: '/lake' };
    expect(resolveConfig('run', {}, { env }).compute!.maxBadRows).to.equal(7);
    expect(resolveConfig('run', { 'max-bad-rows': '3' }, { env }).compute!.maxBadRows).to.equal(3);
    expect(resolveConfig('run', {}, { env: { ...HOME, MUSICKPI_LAKE: '/l' } }).compute!.maxBadRows).to.equal(0);
  });

  it('a command ignores the variables of options it does not take', () => {
    const env = {
      ...HOME,
      MUSICKPI_WAREHOUSE: 'postgresql://x@y/z',
      MUSICKPI_KPIS: 'nonsense',
      MUSICKPI_LAKE: '/l',
      MUSICKPI_CSV: 'maybe',
    };
    const v = resolveConfig('validate', {}, { env });
    expect(v.warehouse).to.equal(undefined);
    expect(v.lake!.uri).to.equal('/l');
    const q = resolveConfig('init', {}, { env: { ...HOME, MUSICKPI_LAKE: 'not used', MUSICKPI_MAX_BAD_ROWS: 'x' } });
    expect(q.lake).to.equal(undefined);
    expect(resolveConfig('archive', {}, { env: { ...HOME, MUSICKPI_LAKE: '/l', MUSICKPI_MAX_BAD_ROWS: 'x' } }).lake!.uri).to.equal('/l');
  });

  it('a repeated flag takes its last value', () => {
    const c = resolveConfig('run', { lake: ['/a', '/b'], kpis: ['hourly', 'genre'] }, { env: HOME });
    expect(c.lake!.uri).to.equal('/b');
    expect(c.compute!.kpis).to.deep.equal(['genre']);
  });

  it('bad values are usage errors naming where they came from', () => {
    expect(usageCode(() => resolveConfig('run', { lake: '/l', 'max-bad-rows': 'ten' }, { env: HOME }))).to.equal('MKPI_USAGE');
    expect(usageCode(() => resolveConfig('run', { lake: '/l' }, { env: { ...HOME, MUSICKPI_WORKERS: '-1' } }))).to.equal('MKPI_USAGE');
    expect(usageCode(() => resolveConfig('run', { lake: '/l', kpis: 'daily' }, { env: HOME }))).to.equal('MKPI_USAGE');
    expect(usageCode(() => resolveConfig('run', { lake: '/l', songs: '../x.csv' }, { env: HOME }))).to.equal('MKPI_USAGE');
    expect(usageCode(() => resolveConfig('run', { lake: '/l', rejects: 'streams/r' }, { env: HOME }))).to.equal('MKPI_USAGE');
    expect(usageCode(() => resolveConfig('run', {}, { env: HOME }))).to.equal('MKPI_USAGE');
    expect(usageCode(() => resolveConfig('run', { lake: '/l', json: 'perhaps' }, { env: HOME }))).to.equal('MKPI_USAGE');
    try {
      resolveConfig('run', { lake: '/l' }, { env: { ...HOME, MUSICKPI_MAX_BAD_ROWS: 'x' } });
    } catch (err) {
      expect((err as Error).message).to.contain('MUSICKPI_MAX_BAD_ROWS');
    }
  });

  it('rejects may go anywhere outside the stream folders: a lake folder, an absolute path, an s3:// URI', () => {
    for (const target of ['out/rejects', '/tmp/r', 's3://bucket/r/']) {
      expect(resolveConfig('validate', { lake: '/l', rejects: target }, { env: HOME }).rejects!.target).to.equal(target);
    }
  });

  it('the embedded home: flag, else $XDG_DATA_HOME/musickpi, else ~/.local/share/musickpi, never the current folder', () => {
    const cwd = '/somewhere';
    expect(resolveConfig('init', {}, { env: { HOME: '/home/u' }, cwd }).warehouse!.home).to.equal('/home/u/.local/share/musickpi');
    expect(resolveConfig('init', {}, { env: { HOME: '/home/u', XDG_DATA_HOME: '/data' }, cwd }).warehouse!.home).to.equal('/data/musickpi');
    expect(resolveConfig('init', { home: 'h' }, { env: HOME, cwd }).warehouse!.home).to.equal('/somewhere/h');
    expect(resolveConfig('init', {}, { env: { ...HOME, MUSICKPI_HOME: '/x' }, cwd }).warehouse!.home).to.equal('/x');
    expect(resolveConfig('init', {}, { env: HOME, cwd }).warehouse!.homeWarning).to.equal(undefined);
  });

  it('the dimension cache: --cache-dir, else $XDG_CACHE_HOME/musickpi, else ~/.cache/musickpi; off with --no-dimension-cache', () => {
    const cwd = '/somewhere';
    const dir = (command: 'run' | 'compute' | 'validate' | 'retract', argv: Record<string, unknown>, env: Record<string, string>) =>
      resolveConfig(command, { lake: '/l', ...argv }, { env, cwd }).cache!.dir;
    expect(dir('compute', {}, HOME)).to.equal('/home/u/.cache/musickpi');
    expect(dir('run', {}, { ...HOME, XDG_CACHE_HOME: '/c' })).to.equal('/c/musickpi');
    expect(dir('validate', {}, { ...HOME, XDG_CACHE_HOME: 'relative' })).to.equal('/home/u/.cache/musickpi');
    expect(dir('retract', { 'cache-dir': 'k' }, HOME)).to.equal('/somewhere/k');
    expect(dir('run', {}, { ...HOME, MUSICKPI_CACHE_DIR: '/k' })).to.equal('/k');
    expect(dir('run', { 'dimension-cache': false }, HOME)).to.equal(undefined);
    expect(dir('run', { 'cache-dir': '/k' }, { ...HOME, MUSICKPI_DIMENSION_CACHE: 'false' })).to.equal(undefined);
    // No per-user folder: no cache, rather than one in the current folder.
    expect(resolveConfig('run', { lake: '/l' }, { env: { HOME: '' }, cwd }).cache!.dir).to.satisfy(
      (d: string | undefined) => d === undefined || !d.startsWith(cwd),
    );
    expect(resolveConfig('status', { lake: '/l' }, { env: HOME, cwd }).cache).to.equal(undefined);
  });

  it('is frozen, and secrets are not enumerable (a JSON dump of it holds no password)', () => {
    const c = resolveConfig('run', { lake: '/l', warehouse: 'postgresql://u:s3cret@h/d' }, { env: { ...HOME, PGPASSWORD: 'pw2' } });
    expect(Object.isFrozen(c)).to.equal(true);
    expect(Object.isFrozen(c.warehouse)).to.equal(true);
    expect(c.warehouse!.url).to.equal('postgresql://u:s3cret@h/d');
    expect(c.warehouse!.env.PGPASSWORD).to.equal('pw2');
    const dump = JSON.stringify(c);
    expect(dump).not.to.contain('s3cret');
    expect(dump).not.to.contain('pw2');
  });

  it('--silent implies --quiet; a spinner only on a terminal and not under CI', () => {
    const c = resolveConfig('run', { lake: '/l', silent: true }, { env: HOME });
    expect(c.output.quiet).to.equal(true);
    expect(resolveConfig('run', { lake: '/l' }, { env: { ...HOME, CI: 'true' }, stderrIsTerminal: true }).output.interactive).to.equal(
      false,
    );
    expect(resolveConfig('run', { lake: '/l' }, { env: HOME, stderrIsTerminal: true }).output.interactive).to.equal(true);
  });

  it('only MKPI_TEST_* variables reach the test hooks', () => {
    const c = resolveConfig('validate', { lake: '/l' }, { env: { ...HOME, MKPI_TEST_FAULT: 'after-list', OTHER: 'x' } });
    expect(c.testEnv).to.deep.equal({ MKPI_TEST_FAULT: 'after-list' });
  });

  it('Redshift staging: the flag, else _musickpi/staging/ under an S3 lake, never for a local lake; an s3:// URI only', () => {
    const s3 = resolveConfig('run', { lake: 's3://b/music/' }, { env: HOME }).warehouse!.redshift;
    expect(s3.staging).to.equal('s3://b/music/_musickpi/staging/');
    expect(resolveConfig('run', { lake: '/l' }, { env: HOME }).warehouse!.redshift.staging).to.equal(undefined);
    const given = resolveConfig('run', { lake: '/l', staging: 's3://stage/p', 'iam-role': 'arn:aws:iam::1:role/r' }, { env: HOME });
    expect(given.warehouse!.redshift).to.deep.include({ staging: 's3://stage/p/', iamRole: 'arn:aws:iam::1:role/r', iam: false });
    expect(resolveConfig('init', {}, { env: { ...HOME, MUSICKPI_STAGING: 's3://x/y/' } }).warehouse!.redshift.staging).to.equal(
      's3://x/y/',
    );
    // A folder is staging for the warehouse engine on PostgreSQL; Redshift's COPY needs S3.
    const local = resolveConfig('run', { lake: '/l', staging: '/tmp/stage', engine: 'warehouse' }, { env: HOME });
    expect(local.warehouse!.redshift.staging).to.equal(undefined);
    expect(local.engine).to.deep.include({ engine: 'warehouse', staging: '/tmp/stage' });
    const rs = { lake: '/l', staging: '/tmp/stage', warehouse: 'redshift://u@c.example.com:5439/db' };
    expect(usageCode(() => resolveConfig('run', rs, { env: HOME }))).to.equal('MKPI_USAGE');
  });

  it('the warehouse engine: --engine, --run-id, --shards, --shard i/N or the index from the scheduler; staging under the lake', () => {
    const c = (cmd: 'run' | 'plan' | 'normalize', argv: Record<string, unknown>, env: Record<string, string> = {}) =>
      resolveConfig(cmd, argv, { env: { ...HOME, ...env }, cwd: '/work' }).engine;
    expect(c('run', { lake: '/l' })).to.deep.include({ engine: 'stream', planId: undefined, staging: '/l/_musickpi/staging' });
    expect(c('run', { lake: 's3://b/m', engine: 'warehouse' })!.staging).to.equal('s3://b/m/_musickpi/staging/');
    expect(c('plan', { lake: 'lake', 'run-id': 'scheduled__2024-06-01T00:00:00+00:00', shards: '16' })).to.deep.include({
      engine: 'warehouse',
      planId: 'scheduled__2024-06-01T00:00:00+00:00',
      shards: 16,
      staging: '/work/lake/_musickpi/staging',
    });
    expect(c('normalize', { lake: '/l', 'run-id': 'r', shard: '3/16' })!.shard).to.deep.equal({ index: 3, count: 16 });
    expect(c('normalize', { lake: '/l', 'run-id': 'r', shards: '4' }, { JOB_COMPLETION_INDEX: '2' })!.shard).to.deep.equal({
      index: 2,
      count: 4,
    });
    expect(c('normalize', { lake: '/l', 'run-id': 'r', shards: '4' }, { AWS_BATCH_JOB_ARRAY_INDEX: '3' })!.shard).to.deep.equal({
      index: 3,
      count: 4,
    });
    for (const bad of [
      () => c('normalize', { lake: '/l', 'run-id': 'r', shard: '4/4' }),
      () => c('normalize', { lake: '/l', 'run-id': 'r' }),
      () => c('normalize', { lake: '/l', shard: '0/1' }),
      () => c('normalize', { lake: '/l', 'run-id': 'r', shards: '4' }),
      () => c('run', { lake: '/l', 'run-id': 'r' }),
      () => c('run', { lake: '/l', engine: 'duckdb' }),
      () => c('plan', { lake: '/l', 'run-id': '../x' }),
      () => c('normalize', { lake: '/l', 'run-id': 'r', shard: '0/2', shards: '3' }),
      () => c('plan', { lake: '/l', staging: '/l/streams/stage' }),
      () => c('plan', { lake: '/l', staging: '/l/streams/archived' }),
    ]) {
      expect(usageCode(bad)).to.equal('MKPI_USAGE');
    }
  });

  it('date windows: --date, --start/--end half-open over dates or instants; --expect-dates D or D..E', () => {
    const w = (argv: Record<string, unknown>) => resolveConfig('compute', { lake: '/l', ...argv }, { env: HOME }).window?.dates;
    expect(w({})).to.equal(undefined);
    expect(w({ date: '2024-06-01' })).to.deep.equal(['2024-06-01']);
    expect(w({ date: '2024-06-01T23:30:00-01:00' })).to.deep.equal(['2024-06-02']);
    expect(w({ start: '2024-06-01', end: '2024-06-03' })).to.deep.equal(['2024-06-01', '2024-06-02']);
    expect(w({ start: '2024-06-01T00:00:00+00:00', end: '2024-06-02T00:00:00+00:00' })).to.deep.equal(['2024-06-01']);
    expect(w({ start: '2024-06-01T12:00:00Z', end: '2024-06-02T01:00:00Z' })).to.deep.equal(['2024-06-01', '2024-06-02']);
    for (const bad of [
      { start: '2024-06-02', end: '2024-06-01' },
      { start: '2024-06-01' },
      { date: 'yesterday' },
      { date: '2024-13-01' },
    ]) {
      expect(usageCode(() => w(bad))).to.equal('MKPI_USAGE');
    }
    const e = resolveConfig('validate', { lake: '/l', 'expect-dates': '2024-06-01..2024-06-03', 'strict-dates': true }, { env: HOME });
    expect(e.expectDates).to.deep.include({ dates: ['2024-06-01', '2024-06-02'], strict: true });
    expect(usageCode(() => resolveConfig('validate', { lake: '/l', 'strict-dates': true }, { env: HOME }))).to.equal('MKPI_USAGE');
    expect(resolveConfig('validate', { lake: '/l', date: '2024-06-01' }, { env: HOME }).window).to.equal(undefined);
  });

  it('names variables and guesses mistyped flags', () => {
    expect(envName('max-bad-rows')).to.equal('MUSICKPI_MAX_BAD_ROWS');
    expect(closestOption('run', 'lak')).to.equal('lake');
    expect(closestOption('run', 'max-bad-row')).to.equal('max-bad-rows');
    expect(closestOption('run', 'zzzzzz')).to.equal(undefined);
  });
});
