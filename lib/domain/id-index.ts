// Exact string -> dense index lookup for the stream scan's hot path (two lookups per listen).
//
// A Map<string, number> costs ~0.5-1 µs per lookup at 114k songs here: the key's hash, then a
// chain of dependent loads (bucket, entry, key string, its parent string, its characters), each
// a likely cache miss once the dictionary outgrows the L2 cache (a random load costs ~150 ns on
// this 2-core EPYC VM). This table keeps the key's characters inline in its slot, so a
// successful lookup touches one 32-byte slot: one miss instead of four or five.
//
// Layout: open addressing with linear probing over a power-of-two Int32Array, 8 ints per slot:
//   [0] hash   [1] index + 1 (0 = empty slot)
//   [2] length (low 8 bits) + characters 0-2 (one byte each, bits 8-31)
//   [3..7] characters 3-22, four per int
// Keys of up to 23 characters, all <= U+00FF, are stored inline (Spotify track IDs are 22
// characters). Any other key has length byte 0xFF, its UTF-16 offset in `pool` at [3] and its
// length at [4]. Comparison is exact either way: a lookup answers only for the very same string.
//
// The arrays can live in SharedArrayBuffers, so worker threads share one copy of the index
// (no per-worker rebuild, no per-worker memory) by receiving `IdIndex.data`.

const SLOT = 8;
const SLOT_SHIFT = 3;
const INLINE_MAX = 23;
const OUT_OF_LINE = 0xff;

/** What a worker needs to use an index built elsewhere: typed arrays only (structured-clonable). */
export interface IdIndexData {
  table: Int32Array;
  pool: Uint16Array;
  size: number;
}

/** FNV-1a over UTF-16 code units, with a final avalanche so that low bits pick slots well. */
export function hashString(s: string): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h;
}

function inlinable(s: string): boolean {
  if (s.length > INLINE_MAX) return false;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

function allocInt32(n: number, shared: boolean): Int32Array {
  return shared ? new Int32Array(new SharedArrayBuffer(n * 4)) : new Int32Array(n);
}

export class IdIndex {
  readonly table: Int32Array;
  readonly pool: Uint16Array;
  readonly size: number;
  private readonly mask: number;

  private constructor(data: IdIndexData) {
    this.table = data.table;
    this.pool = data.pool;
    this.size = data.size;
    this.mask = (data.table.length >>> SLOT_SHIFT) - 1;
  }

  /**
   * Indexes `keys[i]` -> i. Keys must be distinct (the dimensions already deduplicated them).
   * `shared` puts the arrays in SharedArrayBuffers, for worker threads.
   */
  static build(keys: readonly string[], opts: { shared?: boolean } = {}): IdIndex {
    const shared = opts.shared ?? false;
    const n = keys.length;
    // Load factor <= 0.5: short probe sequences, even for misses (orphan IDs).
    let cap = 16;
    while (cap < n * 2) cap <<= 1;
    const table = allocInt32(cap * SLOT, shared);
    let poolLen = 0;
    for (const k of keys) if (!inlinable(k)) poolLen += k.length;
    const pool = shared ? new Uint16Array(new SharedArrayBuffer(Math.max(2, poolLen * 2))) : new Uint16Array(poolLen);
    const mask = cap - 1;
    let poolAt = 0;
    for (let id = 0; id < n; id++) {
      const k = keys[id];
      const len = k.length;
      const h = hashString(k);
      let s = h & mask;
      while (table[(s << SLOT_SHIFT) + 1] !== 0) s = (s + 1) & mask;
      const b = s << SLOT_SHIFT;
      table[b] = h;
      table[b + 1] = id + 1;
      if (inlinable(k)) {
        // The length byte, then the characters, four bytes per int (little end first).
        let w = len;
        let at = b + 2;
        let shift = 8;
        for (let j = 0; j < len; j++) {
          w |= k.charCodeAt(j) << shift;
          shift += 8;
          if (shift === 32) {
            table[at++] = w;
            w = 0;
            shift = 0;
          }
        }
        if (shift !== 0) table[at] = w;
      } else {
        table[b + 2] = OUT_OF_LINE;
        table[b + 3] = poolAt;
        table[b + 4] = len;
        for (let j = 0; j < len; j++) pool[poolAt++] = k.charCodeAt(j);
      }
    }
    return new IdIndex({ table, pool, size: n });
  }

  /** An index over arrays built by `build` (possibly in another thread). */
  static from(data: IdIndexData): IdIndex {
    return new IdIndex(data);
  }

  /**
   * Every key, in index order, read back from the table: the keys are stored whole (inline or in
   * the pool), so a holder of the index needs no second copy of them as strings.
   */
  static keys(data: IdIndexData): string[] {
    const t = data.table;
    const out = new Array<string>(data.size);
    const chars: number[] = [];
    for (let b = 0; b < t.length; b += SLOT) {
      const id = t[b + 1];
      if (id === 0) continue;
      const head = t[b + 2];
      const len = head & 0xff;
      if (len === OUT_OF_LINE) {
        const at = t[b + 3];
        // UTF-16 code units as they are (a lone surrogate included): no spread of a long key.
        const keyUnits = data.pool.subarray(at, at + t[b + 4]);
        out[id - 1] = Buffer.from(keyUnits.buffer, keyUnits.byteOffset, keyUnits.byteLength).toString('utf16le');
        continue;
      }
      chars.length = len;
      let w = head >>> 8;
      let k = 3;
      let at = b + 2;
      for (let j = 0; j < len; j++) {
        if (k === 0) {
          w = t[++at];
          k = 4;
        }
        chars[j] = w & 0xff;
        w >>>= 8;
        k--;
      }
      out[id - 1] = String.fromCharCode(...chars);
    }
    return out;
  }

  /**
   * Whether `data` is a table `build` could have made for `size` keys: a power-of-two table at
   * most half full holding each index once, every key inline (≤ 23 characters) or within the
   * pool. A table read back from a file is checked with it before any lookup trusts it.
   */
  static valid(data: IdIndexData, size: number): boolean {
    const t = data.table;
    const slots = t.length >>> SLOT_SHIFT;
    if (data.size !== size || t.length % SLOT !== 0 || slots < 16 || (slots & (slots - 1)) !== 0 || slots < 2 * size) return false;
    const seen = new Uint8Array(size);
    let n = 0;
    for (let b = 0; b < t.length; b += SLOT) {
      const id = t[b + 1];
      if (id === 0) continue;
      if (id < 1 || id > size || seen[id - 1] !== 0) return false;
      seen[id - 1] = 1;
      n++;
      const len = t[b + 2] & 0xff;
      if (len === OUT_OF_LINE) {
        const at = t[b + 3];
        const count = t[b + 4];
        if (at < 0 || count < 0 || at + count > data.pool.length) return false;
      } else if (len > INLINE_MAX) {
        return false;
      }
    }
    return n === size;
  }

  get data(): IdIndexData {
    return { table: this.table, pool: this.pool, size: this.size };
  }

  /** Index of `key`, or -1 when it is not in the index. */
  get(key: string): number {
    const h = hashString(key);
    const t = this.table;
    const mask = this.mask;
    const n = key.length;
    let s = h & mask;
    for (;;) {
      const b = s << SLOT_SHIFT;
      const id = t[b + 1];
      if (id === 0) return -1;
      if (t[b] === h && this.matches(b, key, n)) return id - 1;
      s = (s + 1) & mask;
    }
  }

  private matches(b: number, key: string, n: number): boolean {
    const t = this.table;
    const head = t[b + 2];
    const len = head & 0xff;
    if (len === OUT_OF_LINE) {
      if (t[b + 4] !== n) return false;
      const pool = this.pool;
      const at = t[b + 3];
      for (let j = 0; j < n; j++) if (pool[at + j] !== key.charCodeAt(j)) return false;
      return true;
    }
    if (len !== n) return false;
    // Characters packed four per int, after the length byte; a character above U+00FF in the
    // key can never equal a stored byte, so such a key never matches an inline entry.
    let w = head >>> 8;
    let k = 3; // characters left in the current int
    let at = b + 2;
    for (let j = 0; j < n; j++) {
      if (k === 0) {
        w = t[++at];
        k = 4;
      }
      if ((w & 0xff) !== key.charCodeAt(j)) return false;
      w >>>= 8;
      k--;
    }
    return true;
  }
}
