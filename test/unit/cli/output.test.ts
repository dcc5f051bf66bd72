// The summary's number format: digits grouped as toLocaleString('en-US') groups them.
import { expect } from 'chai';
import { groupDigits } from '../../../lib/cli/output.js';

describe('cli/output: groupDigits', () => {
  it('equals toLocaleString("en-US") for integers of every length, signs and edge values', () => {
    const values = [0, -0, 1, -1, 9, 10, 99, 100, 999, 1000, 1001, 9999, 10_000, 123_456, 999_999, 1_000_000, 1_234_567_890];
    values.push(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53, 1e21, 1.5, -2.25, 0.0005, NaN, Infinity, -Infinity);
    let x = 1;
    for (let i = 0; i < 2000; i++) {
      x = (x * 48271) % 2147483647;
      values.push(x % 10 ** (1 + (i % 16)), -(x % 10 ** (1 + (i % 9))));
    }
    for (const v of values) expect(groupDigits(v), String(v)).to.equal(v.toLocaleString('en-US'));
  });
});
