import { expect } from 'chai';
import { IdIndex } from '../../lib/domain/id-index.js';

describe("IdIndex (the stream scan's ID lookup)", () => {
  const keys = [
    '',
    'a',
    'ab',
    'abc',
    '5SuOikwiRyPMVoIQDJUgSV', // 22 chars: inline
    '12345678901234567890123', // 23: the longest inline key
    '123456789012345678901234', // 24: out of line
    'user_2654435761',
    'caf\u00e9', // Latin-1 but not ASCII: inline
    '\u00ff\u00fe\u00fd', // top of Latin-1
    'caf\u0065\u0301', // combining accent: out of line, and not equal to 'café'
    '\u{1F600}-smile', // a surrogate pair
    'x'.repeat(300),
    'tab\there',
    '\ud800', // lone surrogates: kept as they are, never replaced
    'a\udc00b',
    '\0'.repeat(23),
  ];
  const index = IdIndex.build(keys);

  it('finds every key at its index, exactly', () => {
    keys.forEach((k, i) => expect(index.get(k), JSON.stringify(k)).to.equal(i));
  });

  it('answers -1 for anything else, however close', () => {
    for (const k of [
      'b',
      'abcd',
      'AB',
      'ab ',
      ' ab',
      '5SuOikwiRyPMVoIQDJUgSv',
      '1234567890123456789012',
      '1234567890123456789012345',
      'user_265443576',
      'cafe',
      'caf\u0129',
      '\u0100\u00fe\u00fd',
      '\u{1F601}-smile',
      'x'.repeat(299),
      'x'.repeat(301),
      'tab here',
    ]) {
      expect(index.get(k), JSON.stringify(k)).to.equal(-1);
    }
  });

  it('gives every key back, in index order, from its arrays alone (inline, pooled, beyond Latin-1)', () => {
    expect(IdIndex.keys(index.data)).to.deep.equal(keys);
    const shared = IdIndex.build(keys, { shared: true });
    expect(IdIndex.keys(IdIndex.from(shared.data).data)).to.deep.equal(keys);
    expect(IdIndex.keys(IdIndex.build([]).data)).to.deep.equal([]);
  });

  it('tells a table build could have made from a damaged one', () => {
    const good = IdIndex.build(keys).data;
    expect(IdIndex.valid(good, keys.length)).to.equal(true);
    expect(IdIndex.valid(good, keys.length + 1)).to.equal(false);
    const damaged = (edit: (t: Int32Array) => void, pool = good.pool) => {
      const table = good.table.slice();
      edit(table);
      return IdIndex.valid({ table, pool, size: keys.length }, keys.length);
    };
    const used = (n: number) => {
      const slots: number[] = [];
      for (let b = 0; b < good.table.length; b += 8) if (good.table[b + 1] !== 0) slots.push(b);
      return slots[n];
    };
    const pooled = (() => {
      for (let b = 0; b < good.table.length; b += 8) if (good.table[b + 1] !== 0 && (good.table[b + 2] & 0xff) === 0xff) return b;
      throw new Error('no pooled key');
    })();
    expect(damaged((t) => (t[used(0) + 1] = t[used(1) + 1]))).to.equal(false); // an index twice
    expect(damaged((t) => (t[used(0) + 1] = keys.length + 1))).to.equal(false); // out of range
    expect(damaged((t) => (t[used(0) + 1] = 0))).to.equal(false); // a key missing
    expect(damaged((t) => (t[used(0) + 2] = (t[used(0) + 2] & ~0xff) | 24))).to.equal(false); // too long inline
    expect(damaged((t) => (t[pooled + 3] = good.pool.length))).to.equal(false); // past the pool
    expect(damaged((t) => (t[pooled + 4] = -1))).to.equal(false);
    expect(
      IdIndex.valid({ table: good.table.subarray(0, good.table.length / 2), pool: good.pool, size: keys.length }, keys.length),
    ).to.equal(false);
    expect(damaged(() => undefined, good.pool.subarray(0, good.pool.length - 1))).to.equal(false);
  });

  it('matches strings sliced out of larger text (as the parser hands them over)', () => {
    const text = 'zz,5SuOikwiRyPMVoIQDJUgSV,user_2654435761,caf\u00e9\n';
    const fields = text.slice(0, -1).split(',');
    expect(index.get(fields[1])).to.equal(4);
    expect(index.get(fields[2])).to.equal(7);
    expect(index.get(fields[3])).to.equal(8);
  });

  it('scales to many keys with no false hits, and works from shared arrays in another instance', () => {
    const many = Array.from({ length: 50_000 }, (_, i) => `user_${(i * 2654435761) % 4294967296}`);
    const big = IdIndex.build(many, { shared: true });
    expect(big.table.buffer).to.be.instanceOf(SharedArrayBuffer);
    const copy = IdIndex.from(structuredClone(big.data));
    for (let i = 0; i < many.length; i += 7) expect(copy.get(many[i])).to.equal(i);
    for (let i = 0; i < 1000; i++) expect(copy.get(`user_x${i}`)).to.equal(-1);
  });
});
