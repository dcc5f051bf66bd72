// User IDs go into the normalized parts under an injective encoding (lib/domain/shards.ts), since
// PostgreSQL text cannot hold U+0000 and Redshift's VARCHAR ends at 65,535 bytes; a track_id no
// song can have is rejected by normalize itself.
import { expect } from 'chai';
import { decodePartId, encodePartId } from '../../../lib/domain/shards.js';
import { couldBeSongId } from '../../../lib/stages/validate.js';

describe('part IDs', () => {
  const ids = ['u1', 'a\\b', 'a\\0', 'a\0', '\0', '\\', '\\\\0', 'é😀', 'x'.repeat(600), 'y'.repeat(599) + '\0', '\\h' + 'f'.repeat(64)];

  it('encodes injectively, with no U+0000 and a bounded length', () => {
    const encoded = ids.map(encodePartId);
    expect(new Set(encoded).size).to.equal(ids.length);
    for (const e of encoded) {
      expect(e).to.not.include('\0');
      expect(e.length).to.be.at.most(2 + 64 + 2 * 65 * 2);
    }
    // Plain IDs stay as they are (the common case costs nothing).
    expect(encodePartId('u-123')).to.equal('u-123');
  });

  it('decodes a short ID whole, and a long one to its first 65 code points (all a detail shows)', () => {
    for (const id of ids.slice(0, 8)) expect(decodePartId(encodePartId(id)), JSON.stringify(id)).to.equal(id);
    expect(decodePartId(encodePartId('x'.repeat(600)))).to.equal('x'.repeat(65));
    expect(decodePartId(encodePartId('\\h' + 'f'.repeat(64)))).to.equal('\\h' + 'f'.repeat(64));
  });

  it('a track_id over 255 characters or with U+0000 can be no song', () => {
    expect(couldBeSongId('t1')).to.equal(true);
    expect(couldBeSongId('t'.repeat(255))).to.equal(true);
    expect(couldBeSongId('t'.repeat(256))).to.equal(false);
    expect(couldBeSongId('t\0')).to.equal(false);
  });
});
