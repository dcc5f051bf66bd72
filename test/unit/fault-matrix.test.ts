// Every fault point of a `run` (FaultPoint in lib/pipeline/pipeline.ts, ArchiveFault in
// lib/stages/archive.ts), in process against the memory fakes: the run is stopped there once by
// a thrown Error and once by aborting its AbortSignal. Then:
//
// - the report says why (a throw is a bug, MKPI_INTERNAL, or MKPI_ARCHIVE_FAILED once archiving
//   has a file in hand; an abort is MKPI_INTERRUPTED);
// - the warehouse is as before the run or fully loaded, never in between (contract §9.2);
// - the lake has lost nothing, and a file is in the archive only if its load committed (§11);
// - a second run without faults ends exactly where one clean run ends: the same KPIs, one ledger
//   row per file, every file archived once.
//
// Two scenarios: a first run over three files, and a run over two late files once the first two
// are loaded and archived (their dates are re-read from the archive, contract §12). Each on a
// lake whose archive copies keep their fingerprint (disk, single-part S3) and on one where a copy
// gets a new one (multipart / SSE-KMS S3).

import { expect } from 'chai';

import type { ErrorCode } from '../../lib/domain/errors.js';
import type { FaultPoint } from '../../lib/pipeline/pipeline.js';
import type { RunReport } from '../../lib/pipeline/report.js';
import type { LedgerEntry } from '../../lib/domain/ledger.js';
import { MemoryLake, type MemoryLakeOptions } from '../support/fakes/memory-lake.js';
import { DATE_STATE_PREFIX } from '../../lib/domain/layout.js';
import { MemoryWarehouse, type WarehouseSnapshot } from '../support/fakes/memory-warehouse.js';
import { LAYOUT, STREAMS, TINY_GENRE, TINY_HOURLY, addStreams, runOn, tinyLake, type StreamName } from '../support/fakes/tiny-lake.js';

/** In run order. */
const POINTS: FaultPoint[] = [
  'after-lock',
  'after-list',
  'mid-parse',
  'after-scan',
  'mid-copy',
  'staged',
  'mid-merge',
  'merged',
  'before-commit',
  'after-commit',
  'mid-state',
  'after-archive-list',
  'after-archive-copy',
  'after-archive-mark',
  'after-archive-delete',
];

/** Points at which the load has committed. */
const COMMITTED = new Set<FaultPoint>(POINTS.slice(POINTS.indexOf('after-commit')));
/** Points inside archiving one file: a throw there is that file's archive failing. */
const IN_FILE = new Set<FaultPoint>(['after-archive-copy', 'after-archive-mark', 'after-archive-delete']);

type Mode = 'throw' | 'abort';

interface Scenario {
  name: string;
  /** Loaded and archived by a clean run before the faulted one. */
  before: StreamName[];
  /** What the faulted run finds new in streams/. */
  fresh: StreamName[];
}

const SCENARIOS: Scenario[] = [
  { name: 'first run over a, b, c', before: [], fresh: ['a.csv', 'b.csv', 'c.csv'] },
  { name: 'late files c, d after a, b were archived', before: ['a.csv', 'b.csv'], fresh: ['c.csv', 'd.csv'] },
];

const FLAVOURS: [string, MemoryLakeOptions][] = [
  ['copies keep their fingerprint', { copies: 'keep' }],
  ['copies get a new fingerprint', { copies: 'new', chunkSizes: [7, 3] }],
];

class Injected extends Error {}

function expectedCode(point: FaultPoint, mode: Mode): ErrorCode {
  if (mode === 'abort') return 'MKPI_INTERRUPTED';
  return IN_FILE.has(point) ? 'MKPI_ARCHIVE_FAILED' : 'MKPI_INTERNAL';
}

/** A ledger row without what differs between two histories that end alike. */
function essence(e: LedgerEntry) {
  return { fileKey: e.fileKey, contentHash: e.contentHash, size: e.size, rows: e.rows, dates: e.dates, tables: e.tables };
}

function loadedState(s: WarehouseSnapshot) {
  return { hourly: s.hourly, genre: s.genre, ledger: s.ledger.map(essence) };
}

const archived = (name: string) => LAYOUT.archive + name;
const inStreams = (name: string) => LAYOUT.streams + name;

/** streams/ and the archive, rejects left out. */
function lakeFiles(lake: MemoryLake): Record<string, string> {
  return lake.contents(LAYOUT.streams);
}

/** Every run keeps saved date states in the lake, as the CLI's runs do (lib/stages/date-state.ts). */
const withState = (lake: MemoryLake) => ({ dateState: { lake, prefix: DATE_STATE_PREFIX, version: 'test' } });

async function cleanRun(lake: MemoryLake, warehouse: MemoryWarehouse): Promise<RunReport> {
  const r = await runOn(lake, warehouse, withState(lake));
  expect(r.error, JSON.stringify(r.error)).to.equal(null);
  return r;
}

interface Reference {
  warehouse: WarehouseSnapshot;
  lake: Record<string, string>;
}

/** A late file with a row on each date of the stream files. */
const LATE_ON_EVERY_DATE =
  'user_id,track_id,listen_time\nu3,t2,2024-06-01 10:45:00\nu2,t4,2024-06-02 00:30:00\nu4,t1,2024-06-03 08:10:00\n';

const lateTables = new Map<string, Promise<WarehouseSnapshot>>();

/** The tables of one clean run over a scenario's files and the late file on every date, without saved states. */
function withLate(sc: Scenario, opts: MemoryLakeOptions): Promise<WarehouseSnapshot> {
  const key = `${sc.name}/${JSON.stringify(opts)}`;
  if (!lateTables.has(key)) {
    lateTables.set(
      key,
      (async () => {
        const lake = tinyLake([...sc.before, ...sc.fresh], opts);
        lake.put(inStreams('late.csv'), LATE_ON_EVERY_DATE);
        const warehouse = new MemoryWarehouse();
        const r = await runOn(lake, warehouse);
        expect(r.error, JSON.stringify(r.error)).to.equal(null);
        return warehouse.snapshot();
      })(),
    );
  }
  return lateTables.get(key)!;
}

/** One clean run over every file a scenario ends with. */
async function reference(sc: Scenario, opts: MemoryLakeOptions): Promise<Reference> {
  const lake = tinyLake([...sc.before, ...sc.fresh], opts);
  const warehouse = new MemoryWarehouse();
  await cleanRun(lake, warehouse);
  return { warehouse: warehouse.snapshot(), lake: lakeFiles(lake) };
}

describe('fault matrix: a run stopped at every fault point, then a normal run, equals one clean run', () => {
  const references = new Map<string, Reference>();

  before(async () => {
    for (const [flavour, opts] of FLAVOURS) {
      for (const sc of SCENARIOS) references.set(`${flavour}/${sc.name}`, await reference(sc, opts));
    }
  });

  it('the clean runs give the hand-checked KPIs (fixtures/tiny, and c.csv on top of it)', async () => {
    const lake = tinyLake(['a.csv', 'b.csv']);
    const warehouse = new MemoryWarehouse();
    await cleanRun(lake, warehouse);
    expect(warehouse.snapshot().hourly).to.deep.equal(TINY_HOURLY);
    expect(warehouse.snapshot().genre).to.deep.equal(TINY_GENRE);

    // c.csv adds u2·t2 at 11:30 on 2024-06-01, and u1·t3 on 2024-06-03.
    const ref = references.get(`${FLAVOURS[0][0]}/${SCENARIOS[0].name}`)!.warehouse;
    const hour11 = ref.hourly.find((r) => r.listen_date === '2024-06-01' && r.listen_hour === 11);
    expect(hour11).to.deep.include({ unique_listeners: 2, listen_counts: 2, top_artist: 'Bob', most_engaged_age_group: '26-35' });
    const pop = ref.genre.find((r) => r.listen_date === '2024-06-01' && r.track_genre === 'pop');
    expect(pop).to.deep.include({ listen_count: 4, popularity_index: 4 / 7, average_duration: 150, most_popular_track_id: 't1' });
    expect(ref.genre.filter((r) => r.listen_date === '2024-06-03')).to.deep.equal([
      {
        listen_date: '2024-06-03',
        track_genre: 'rock',
        listen_count: 1,
        popularity_index: 1,
        average_duration: 300,
        most_popular_track_id: 't3',
      },
    ]);
    expect(ref.ledger.map((e) => [e.fileKey, e.archivedKey])).to.deep.equal([
      ['streams/a.csv', 'streams/archived/a.csv'],
      ['streams/b.csv', 'streams/archived/b.csv'],
      ['streams/c.csv', 'streams/archived/c.csv'],
    ]);
  });

  for (const [flavour, lakeOpts] of FLAVOURS) {
    for (const sc of SCENARIOS) {
      describe(`${sc.name}; ${flavour}`, () => {
        for (const point of POINTS) {
          for (const mode of ['throw', 'abort'] as const) {
            it(`${mode} at ${point}`, async () => {
              const ref = references.get(`${flavour}/${sc.name}`)!;
              const lake = tinyLake(sc.before, lakeOpts);
              const warehouse = new MemoryWarehouse();
              if (sc.before.length > 0) await cleanRun(lake, warehouse);
              addStreams(lake, sc.fresh);
              const before = warehouse.snapshot();

              const controller = new AbortController();
              let fired = 0;
              const report = await runOn(lake, warehouse, {
                ...withState(lake),
                signal: controller.signal,
                // Synchronous: 'mid-parse' is called without being awaited.
                fault: (p) => {
                  if (p !== point || fired++ > 0) return;
                  if (mode === 'throw') throw new Injected(`injected at ${p}`);
                  controller.abort(new Injected(`aborted at ${p}`));
                },
              });

              expect(fired, 'the fault point was reached').to.be.greaterThan(0);
              expect(report.ok).to.equal(false);
              expect(report.error?.code, JSON.stringify(report.error)).to.equal(expectedCode(point, mode));
              expect(warehouse.lockHeld, 'the run lock is released').to.equal(false);

              // The warehouse: untouched, or loaded in full.
              const now = warehouse.snapshot();
              const committed = COMMITTED.has(point);
              if (committed) {
                expect(loadedState(now)).to.deep.equal(loadedState(ref.warehouse));
                // After a throw at 'after-commit' the load has committed, but load() did not return.
                if (!(mode === 'throw' && point === 'after-commit')) expect(report.loaded).to.equal(true);
              } else {
                expect(now).to.deep.equal(before);
                expect(report.loaded).to.equal(false);
              }

              // The lake: nothing lost, nothing archived that the ledger does not hold.
              for (const name of [...sc.before, ...sc.fresh]) {
                const there = [inStreams(name), archived(name)].filter((k) => lake.text(k) === STREAMS[name]);
                expect(there, `${name} is somewhere`).to.not.deep.equal([]);
              }
              for (const name of sc.fresh) {
                if (!committed) expect(lake.has(archived(name)), `${name} archived before its load committed`).to.equal(false);
              }
              for (const key of lake.keys(LAYOUT.archive)) {
                const name = key.slice(LAYOUT.archive.length) as StreamName;
                expect(STREAMS[name], `${key} is a stream file`).to.equal(lake.text(key));
              }

              // A normal run finishes the job and ends where one clean run ends.
              const rerun = await runOn(lake, warehouse, withState(lake));
              expect(rerun.error, JSON.stringify(rerun.error)).to.equal(null);
              const end = warehouse.snapshot();
              expect(loadedState(end)).to.deep.equal(loadedState(ref.warehouse));
              expect(end.ledger.map((e) => e.fileKey)).to.deep.equal([...sc.before, ...sc.fresh].sort().map(inStreams));
              expect(end.ledger.map((e) => e.archivedKey)).to.deep.equal([...sc.before, ...sc.fresh].sort().map(archived));
              expect(lakeFiles(lake)).to.deep.equal(ref.lake);

              // And a third run has nothing left to do.
              const third = await runOn(lake, warehouse, withState(lake));
              expect(third.error).to.equal(null);
              expect(third.loaded).to.equal(false);
              expect(third.archived).to.deep.equal([]);
              expect(warehouse.snapshot()).to.deep.equal(end);

              // Whatever date states the stopped run left, a later late file on every date is exact.
              lake.put(inStreams('late.csv'), LATE_ON_EVERY_DATE);
              const late = await runOn(lake, warehouse, withState(lake));
              expect(late.error, JSON.stringify(late.error)).to.equal(null);
              expect(loadedState(warehouse.snapshot()).hourly).to.deep.equal((await withLate(sc, lakeOpts)).hourly);
              expect(loadedState(warehouse.snapshot()).genre).to.deep.equal((await withLate(sc, lakeOpts)).genre);
            });
          }
        }
      });
    }
  }

  describe('the stores failing instead of the run', () => {
    const LOAD_STEPS = ['load', 'mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit'] as const;
    for (const step of LOAD_STEPS) {
      it(`the warehouse failing at ${step} rolls the load back; the next run loads it all`, async () => {
        const lake = tinyLake(['a.csv', 'b.csv']);
        const warehouse = new MemoryWarehouse().failAt(step, { times: 1 });
        const r = await runOn(lake, warehouse);
        expect(r.error?.code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
        expect(warehouse.snapshot()).to.deep.equal({ hourly: [], genre: [], ledger: [] });
        expect(lake.keys(LAYOUT.archive)).to.deep.equal([]);
        expect((await runOn(lake, warehouse)).error).to.equal(null);
        expect(warehouse.snapshot().hourly).to.deep.equal(TINY_HOURLY);
        expect(lake.keys(LAYOUT.archive)).to.deep.equal([archived('a.csv'), archived('b.csv')]);
      });
    }

    for (const op of ['move', 'move-delete'] as const) {
      it(`the lake failing to ${op === 'move' ? 'copy' : 'delete the source of'} a loaded file is MKPI_ARCHIVE_FAILED; the next run archives it`, async () => {
        const lake = tinyLake(['a.csv', 'b.csv']);
        lake.failOn(op, inStreams('b.csv'), { times: 1 });
        const warehouse = new MemoryWarehouse();
        const r = await runOn(lake, warehouse);
        expect(r.error?.code).to.equal('MKPI_ARCHIVE_FAILED');
        expect(r.loaded).to.equal(true);
        expect(r.archived.map((f) => f.from)).to.deep.equal([inStreams('a.csv')]);
        expect(lake.text(inStreams('b.csv'))).to.equal(STREAMS['b.csv']);
        const again = await runOn(lake, warehouse);
        expect(again.error).to.equal(null);
        expect(again.loaded).to.equal(false);
        expect(lake.keys(LAYOUT.streams)).to.deep.equal([archived('a.csv'), archived('b.csv')]);
        expect(warehouse.snapshot().ledger.map((e) => e.archivedKey)).to.deep.equal([archived('a.csv'), archived('b.csv')]);
      });
    }

    it('the lock lost before COMMIT rolls the load back with MKPI_RETRY_LATER', async () => {
      const lake = tinyLake(['a.csv']);
      const warehouse = new MemoryWarehouse();
      const r = await runOn(lake, warehouse, {
        fault: (p) => {
          if (p === 'merged') warehouse.loseLock();
        },
      });
      expect(r.error?.code).to.equal('MKPI_RETRY_LATER');
      expect(warehouse.snapshot().ledger).to.deep.equal([]);
      expect((await runOn(lake, warehouse)).error).to.equal(null);
      expect(warehouse.snapshot().ledger).to.have.length(1);
    });
  });
});
