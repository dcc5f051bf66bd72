// The rejects output (contract §5.4, lib/stages/rejects.ts): one CSV of file, line, reason, a
// detail saying why and the raw record, published into the lake only when a row was rejected;
// worker spools appended in order give the bytes one writer would have written.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { isMkpiError } from '../../../lib/domain/errors.js';
import { REJECTS_HEADER, RejectSink, RejectSpool, rejectLine } from '../../../lib/stages/rejects.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';

const HEADER = 'file,line,reason,detail,raw\n';

describe('stages/rejects', () => {
  const sinks: RejectSink[] = [];
  const sink = () => {
    const s = new RejectSink();
    sinks.push(s);
    return s;
  };
  afterEach(() => {
    for (const s of sinks.splice(0)) s.dispose();
  });

  describe('rejectLine', () => {
    it('has the header file, line, reason, detail, raw', () => {
      expect(REJECTS_HEADER).to.equal(HEADER);
    });

    it('writes file, line, reason, detail and the fields re-encoded as CSV and joined by commas', () => {
      expect(rejectLine('streams/a.csv', 3, 'malformed', '2 fields, header has 3', ['u1', 't1'])).to.equal(
        'streams/a.csv,3,malformed,"2 fields, header has 3","u1,t1"\n',
      );
      expect(rejectLine('streams/a.csv', 4, 'missing_user_id', 'user_id is empty', ['u1'])).to.equal(
        'streams/a.csv,4,missing_user_id,user_id is empty,u1\n',
      );
    });

    it('quotes a value holding a quote, a comma, CR or LF, or whitespace at either end', () => {
      expect(rejectLine('a,b.csv', 1, 'malformed', 'd', ['x'])).to.equal('"a,b.csv",1,malformed,d,x\n');
      // The raw field is the record re-encoded ( "say ""hi""" ), then quoted as one value.
      expect(rejectLine('f', 2, 'malformed', 'd', ['say "hi"'])).to.equal('f,2,malformed,d,"""say """"hi"""""""\n');
      expect(rejectLine('f', 2, 'malformed', 'd', [' padded'])).to.equal('f,2,malformed,d,""" padded"""\n');
      expect(rejectLine('f', 2, 'malformed', 'd', ['a\nb'])).to.equal('f,2,malformed,d,"""a\nb"""\n');
      // A detail that quotes a value holds quotes itself.
      expect(rejectLine('f', 2, 'unknown_user', 'user_id "u9" is not a valid user in users.csv', ['u9'])).to.equal(
        'f,2,unknown_user,"user_id ""u9"" is not a valid user in users.csv",u9\n',
      );
    });

    it('has an empty raw value for a record over the length bound (no fields kept)', () => {
      expect(rejectLine('f', 9, 'malformed', 'record over 1000000 characters, not kept', [])).to.equal(
        'f,9,malformed,"record over 1000000 characters, not kept",\n',
      );
    });
  });

  describe('RejectSink', () => {
    it('publishes nothing when no row was rejected', async () => {
      const lake = new MemoryLake();
      const s = sink();
      expect(s.count).to.equal(0);
      expect(await s.publish(lake, 'rejects/r1/rejects.csv')).to.equal(false);
      expect(lake.keys()).to.deep.equal([]);
    });

    it('publishes a header and one line per rejected row, in the order added', async () => {
      const lake = new MemoryLake();
      const s = sink();
      s.add('songs.csv', 4, 'bad_duration_ms', 'why', ['t1', 'A', 'pop', 'x']);
      s.add('streams/a.csv', 2, 'unknown_user', 'why', ['u9', 't1', '2024-06-01 10:00:00']);
      expect(s.count).to.equal(2);
      expect(await s.publish(lake, 'rejects/r1/rejects.csv')).to.equal(true);
      expect(lake.text('rejects/r1/rejects.csv')).to.equal(
        HEADER + 'songs.csv,4,bad_duration_ms,why,"t1,A,pop,x"\n' + 'streams/a.csv,2,unknown_user,why,"u9,t1,2024-06-01 10:00:00"\n',
      );
    });

    it('appends worker spools after the rows written so far, byte for byte what one writer gives', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'mkpi-rejects-test-'));
      try {
        const spool = new RejectSpool(join(dir, 'b.spool'));
        spool.add('streams/b.csv', 3, 'malformed', 'why', ['x']);
        spool.add('streams/b.csv', 5, 'unknown_track', 'why', ['u1', 't9', '2024-06-02 00:40:00']);
        spool.close();
        spool.close();
        expect(spool.count).to.equal(2);

        const split = sink();
        split.add('streams/a.csv', 2, 'missing_user_id', 'why', ['', 't1', 'x']);
        split.appendSpool(spool.path, spool.count);
        split.appendSpool(spool.path, 0);
        split.add('streams/c.csv', 7, 'bad_listen_time', 'why', ['u1', 't1', 'nope']);

        const one = sink();
        one.add('streams/a.csv', 2, 'missing_user_id', 'why', ['', 't1', 'x']);
        one.add('streams/b.csv', 3, 'malformed', 'why', ['x']);
        one.add('streams/b.csv', 5, 'unknown_track', 'why', ['u1', 't9', '2024-06-02 00:40:00']);
        one.add('streams/c.csv', 7, 'bad_listen_time', 'why', ['u1', 't1', 'nope']);

        const lake = new MemoryLake();
        await split.publish(lake, 'x/split.csv');
        await one.publish(lake, 'x/one.csv');
        expect(split.count).to.equal(4);
        expect(lake.text('x/split.csv')).to.equal(lake.text('x/one.csv'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('keeps rejects beyond its memory buffer (spooled to disk)', async () => {
      const lake = new MemoryLake();
      const s = sink();
      const long = 'x'.repeat(1000);
      for (let i = 0; i < 3000; i++) s.add('streams/a.csv', i + 2, 'malformed', 'why', [long]);
      await s.publish(lake, 'r.csv');
      const lines = lake.text('r.csv')!.split('\n');
      expect(lines).to.have.length(3002);
      expect(lines[3000]).to.equal(`streams/a.csv,3001,malformed,why,${long}`);
    });

    it('fails publishing with the code of the lake that fails, and stops on an aborted signal', async () => {
      const s = sink();
      s.add('f', 1, 'malformed', 'why', []);
      const lake = new MemoryLake().failOn('write');
      const err = await s.publish(lake, 'r.csv').catch((e: unknown) => e);
      expect(isMkpiError(err) && err.code).to.equal('MKPI_LAKE_UNAVAILABLE');
      const aborted = await s.publish(new MemoryLake(), 'r.csv', AbortSignal.abort()).catch((e: unknown) => e);
      expect(isMkpiError(aborted) && aborted.code).to.equal('MKPI_INTERRUPTED');
    });
  });
});
