// The reducers' state under a memory budget (lib/pipeline/state-spill.ts): spilled and taken
// back a date at a time, it gives the results of the state never spilled; what is kept for
// later reads back whole, before and after the first spill; killed runs' folders are swept.

import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { rng } from '../../../bench/generate-lake.js';
import { add, create, result, stateBytes, type KpiState } from '../../../lib/stages/reduce.js';
import { DimensionsBuilder, type Dimensions } from '../../../lib/stages/validate.js';
import { SPILL_FOLDER_PREFIX, STALE_SPILL_MS, StateSpill, sweepStaleSpills } from '../../../lib/pipeline/state-spill.js';

function catalogue(tracks: number, users: number): Dimensions {
  const b = new DimensionsBuilder();
  for (let t = 0; t < tracks; t++)
    b.addSong({ ok: true, trackId: `t${t}`, artists: [`A${t % 17}`], genre: `g${t % 5}`, durationMs: 1000 + t });
  for (let u = 0; u < users; u++) b.addUser({ ok: true, userId: `u${u}`, ageGroup: u % 7 === 0 ? -1 : u % 6 });
  return b.build();
}

describe('state spill: the KPI state under a memory budget', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'mkpi-spill-test-'));
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('spilled whenever it passes the budget and taken back a date at a time, it gives the results of the state never spilled', () => {
    const d = catalogue(400, 300);
    for (const budget of [1, 20_000, 200_000]) {
      const next = rng(budget);
      const whole = create(d.trackCount, d.userCount);
      const held = create(d.trackCount, d.userCount);
      const spill = new StateSpill({ dir: join(tmp(), 'spill'), budgetBytes: budget });
      const days = [19000, 19001, 19005, 19030];
      for (let i = 0; i < 20_000; i++) {
        const key = days[Math.floor(next() * days.length)] * 24 + Math.floor(next() * 24);
        const t = Math.floor(next() * d.trackCount);
        const u = Math.floor(next() * d.userCount);
        for (const s of [whole, held]) add(s, key, t, u, d.userAgeGroup[u]);
        if (i % 997 === 0) spill.check(held);
      }
      expect(stateBytes(held)).to.be.at.most(Math.max(budget, stateBytes(whole)));
      if (budget < 200_000) expect(spill.spills, `budget ${budget}`).to.be.greaterThan(0);
      const rows = (s: KpiState, take: (day: number) => KpiState) => days.map((day) => result(take(day), d, { days: new Set([day]) }));
      const want = days.map((day) => result(whole, d, { days: new Set([day]) }));
      expect(
        rows(held, (day) => spill.takeDay(held, day)),
        `budget ${budget}`,
      ).to.deep.equal(want);
      expect(held.hours.size).to.equal(0);
      spill.close();
    }
  });

  it('keeps bytes for later in memory, then in its file once it has spilled; a broken part is an error, never a result', () => {
    const d = catalogue(10, 10);
    const dir = join(tmp(), 'spill');
    const spill = new StateSpill({ dir, budgetBytes: 1 });
    spill.keep('before', Buffer.from('in memory'));
    const s = create(d.trackCount, d.userCount);
    add(s, 19000 * 24, 1, 1, 0);
    spill.check(s);
    expect(spill.spills).to.equal(1);
    spill.keep('after', Buffer.from('in the file'));
    expect(spill.keptNames()).to.deep.equal(['before', 'after']);
    expect(spill.kept('before')?.toString()).to.equal('in memory');
    expect(spill.kept('after')?.toString()).to.equal('in the file');
    expect(readdirSync(dir)).to.have.length(1);
    // A part whose bytes changed under the run does not decode: the run fails rather than count it.
    const other = new StateSpill({ dir, budgetBytes: 1 });
    other.add(spill.all().map((p) => ({ ...p, offset: p.offset + 1 })));
    expect(() => other.takeDay(create(d.trackCount, d.userCount), 19000)).to.throw(/does not read back/);
    spill.close();
    other.close();
  });

  it('sweeps the spill folders of killed runs (older than a day), and nothing else', async () => {
    const parent = tmp();
    const old = join(parent, `${SPILL_FOLDER_PREFIX}old`);
    const young = join(parent, `${SPILL_FOLDER_PREFIX}young`);
    const other = join(parent, 'someone-else');
    for (const p of [old, young, other]) mkdirSync(p);
    const past = (Date.now() - STALE_SPILL_MS - 60_000) / 1000;
    utimesSync(old, past, past);
    utimesSync(other, past, past);
    expect(await sweepStaleSpills(parent)).to.equal(1);
    expect(readdirSync(parent).sort()).to.deep.equal([`${SPILL_FOLDER_PREFIX}young`, 'someone-else']);
  });
});
