import { expect } from 'chai';
import { pruneRejectFolders } from '../../../lib/stages/rejects.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';

describe('stages/rejects: pruneRejectFolders (--keep-rejects)', () => {
  const runs = ['20261101T030000Z-aaaaaa', '20261102T030000Z-bbbbbb', '20261103T030000Z-cccccc', '20261104T030000Z-dddddd'];

  function lake(): MemoryLake {
    const l = new MemoryLake();
    for (const r of runs) l.put(`rejects/${r}/rejects.csv`, 'file,line,reason,detail,raw\n');
    l.put('rejects/keep-me/notes.csv', 'x');
    l.put('rejects/top.csv', 'x');
    return l;
  }

  it('keeps the newest N run folders and removes the older ones, never other objects', async () => {
    const l = lake();
    expect(await pruneRejectFolders(l, 'rejects/', 2)).to.equal(2);
    expect(l.keys('rejects/')).to.deep.equal([
      `rejects/${runs[2]}/rejects.csv`,
      `rejects/${runs[3]}/rejects.csv`,
      'rejects/keep-me/notes.csv',
      'rejects/top.csv',
    ]);
  });

  it('0 keeps everything; more than there are removes nothing', async () => {
    const l = lake();
    expect(await pruneRejectFolders(l, 'rejects/', 0)).to.equal(0);
    expect(await pruneRejectFolders(l, 'rejects/', 10)).to.equal(0);
    expect(l.keys('rejects/')).to.have.length(6);
  });
});
