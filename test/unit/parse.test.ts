import { expect } from 'chai';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CsvParseStream,
  CsvParser,
  FLAG_OK,
  detachField,
  FLAG_TOO_LONG,
  FLAG_UNTERMINATED,
  parseCsv,
  type CsvBatch,
  type CsvParserOptions,
} from '../../lib/stages/parse.js';

type Rec = [fields: string[], line: number, flag: number];

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Parses `input` fed as the given chunks (cut at the given byte offsets). */
function parseChunks(input: Uint8Array | string, cuts: number[] = [], opts?: CsvParserOptions): Rec[] {
  const bytes = typeof input === 'string' ? utf8(input) : input;
  const out: Rec[] = [];
  const parser = new CsvParser((fields, line, flag) => out.push([fields, line, flag]), opts);
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    parser.write(bytes.subarray(at, cut));
    at = cut;
  }
  parser.end();
  return out;
}

/**
 * The dialect as a plain character-at-a-time reading of the whole decoded text: slow, but
 * simple enough to serve as the oracle for the real parser's fast paths and chunk handling.
 */
function referenceParse(text: string, maxRecordChars = Infinity): Rec[] {
  const out: Rec[] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (i < n) {
    const start = i;
    const startLine = line;
    const fields: string[] = [];
    let field = '';
    let quoted = false;
    let atFieldStart = true;
    let flag = FLAG_OK;
    let end: number;
    for (;;) {
      if (i >= n) {
        end = n;
        if (quoted) flag = FLAG_UNTERMINATED;
        break;
      }
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') {
          field += '"';
          i += 2;
        } else if (c === '"') {
          quoted = false;
          i++;
        } else {
          if (c === '\n') line++;
          field += c;
          i++;
        }
        continue;
      }
      if (atFieldStart && c === '"') {
        quoted = true;
        atFieldStart = false;
        i++;
        continue;
      }
      atFieldStart = false;
      if (c === ',') {
        fields.push(field);
        field = '';
        atFieldStart = true;
        i++;
      } else if (c === '\n' || (c === '\r' && (i + 1 === n || text[i + 1] === '\n'))) {
        end = i;
        i += c === '\r' ? 2 : 1;
        line++;
        break;
      } else {
        field += c;
        i++;
      }
    }
    if (end === start) continue;
    fields.push(field);
    out.push(end - start > maxRecordChars ? [[], startLine, FLAG_TOO_LONG] : [fields, startLine, flag]);
  }
  return out;
}

const parse = (input: Uint8Array | string, opts?: CsvParserOptions): Rec[] => parseChunks(input, [], opts);
const fieldsOf = (input: string): string[][] => parse(input).map((r) => r[0]);

describe('parse', () => {
  describe('CsvParser: dialect', () => {
    it('splits plain records and numbers their lines', () => {
      expect(parse('a,b,c\n1,2,3\n4,5,6\n')).to.deep.equal([
        [['a', 'b', 'c'], 1, FLAG_OK],
        [['1', '2', '3'], 2, FLAG_OK],
        [['4', '5', '6'], 3, FLAG_OK],
      ]);
    });

    it('needs no line ending after the last record', () => {
      expect(fieldsOf('a,b\n1,2')).to.deep.equal([
        ['a', 'b'],
        ['1', '2'],
      ]);
      expect(fieldsOf('a,b\n"1",2')).to.deep.equal([
        ['a', 'b'],
        ['1', '2'],
      ]);
    });

    it('strips a leading BOM, and only a leading one', () => {
      expect(fieldsOf('\uFEFFuser_id,b\n1,2\n')).to.deep.equal([
        ['user_id', 'b'],
        ['1', '2'],
      ]);
      expect(fieldsOf('\uFEFF"user_id",b\n')).to.deep.equal([['user_id', 'b']]);
      expect(fieldsOf('a,b\n\uFEFF1,2\n')).to.deep.equal([
        ['a', 'b'],
        ['\uFEFF1', '2'],
      ]);
      expect(fieldsOf('\uFEFF\uFEFFa\n')).to.deep.equal([['\uFEFFa']]);
      expect(parse('\uFEFF')).to.deep.equal([]);
    });

    it('accepts CRLF, LF and a mix of both', () => {
      expect(parse('a,b\r\n1,2\r\n')).to.deep.equal([
        [['a', 'b'], 1, 0],
        [['1', '2'], 2, 0],
      ]);
      expect(parse('a,b\r\n1,2\n3,4\r\n"5",6\n7,8')).to.deep.equal([
        [['a', 'b'], 1, 0],
        [['1', '2'], 2, 0],
        [['3', '4'], 3, 0],
        [['5', '6'], 4, 0],
        [['7', '8'], 5, 0],
      ]);
    });

    it('keeps a lone CR as data, and drops a CR that ends the input', () => {
      expect(fieldsOf('a\rb,c\n')).to.deep.equal([['a\rb', 'c']]);
      expect(fieldsOf('"q"\rb,c\n')).to.deep.equal([['q\rb', 'c']]);
      expect(fieldsOf('a,b\r\r\n')).to.deep.equal([['a', 'b\r']]);
      expect(fieldsOf('a,b\r')).to.deep.equal([['a', 'b']]);
      expect(fieldsOf('a,"b"\r')).to.deep.equal([['a', 'b']]);
    });

    it('does not trim fields', () => {
      expect(fieldsOf(' a , b ,\t c\t\n')).to.deep.equal([[' a ', ' b ', '\t c\t']]);
    });

    it('keeps empty fields, leading and trailing', () => {
      expect(fieldsOf(',a,,b,\n,\n')).to.deep.equal([
        ['', 'a', '', 'b', ''],
        ['', ''],
      ]);
      expect(fieldsOf('"",""\n"a",\n')).to.deep.equal([
        ['', ''],
        ['a', ''],
      ]);
    });

    it('reads quoted fields with commas, CRLF/LF newlines and "" escapes', () => {
      expect(fieldsOf('"a,b",c\n')).to.deep.equal([['a,b', 'c']]);
      expect(fieldsOf('"say ""hi""",x\n')).to.deep.equal([['say "hi"', 'x']]);
      expect(fieldsOf('"""",x\n')).to.deep.equal([['"', 'x']]);
      expect(fieldsOf('""""""\n')).to.deep.equal([['""']]);
      expect(fieldsOf('"l1\nl2\r\nl3",x\n')).to.deep.equal([['l1\nl2\r\nl3', 'x']]);
      expect(fieldsOf('"ends in CR\r"\n')).to.deep.equal([['ends in CR\r']]);
    });

    it('keeps line numbers right after quoted newlines', () => {
      expect(parse('h1,h2\n"a\nb\nc",1\nx,2\r\n"\r\n",3\r\ny,4\n')).to.deep.equal([
        [['h1', 'h2'], 1, 0],
        [['a\nb\nc', '1'], 2, 0],
        [['x', '2'], 5, 0],
        [['\r\n', '3'], 6, 0],
        [['y', '4'], 8, 0],
      ]);
    });

    it('skips empty lines (LF, CRLF, lone CR before LF) but counts them', () => {
      expect(parse('\n\na,b\n\n\r\n1,2\r\n\n\n"3",4\n\n')).to.deep.equal([
        [['a', 'b'], 3, 0],
        [['1', '2'], 6, 0],
        [['3', '4'], 9, 0],
      ]);
      expect(parse('\n\r\n\n')).to.deep.equal([]);
      expect(parse('')).to.deep.equal([]);
    });

    it('treats whitespace-only and quote-only lines as records', () => {
      expect(parse(' \n""\n\t\n')).to.deep.equal([
        [[' '], 1, 0],
        [[''], 2, 0],
        [['\t'], 3, 0],
      ]);
    });

    it('is lenient about stray quotes', () => {
      expect(fieldsOf('a"b,c\n')).to.deep.equal([['a"b', 'c']]);
      expect(fieldsOf('ab",c"\n')).to.deep.equal([['ab"', 'c"']]);
      expect(fieldsOf('"ab"cd,e\n')).to.deep.equal([['abcd', 'e']]);
      expect(fieldsOf('"ab"c"d",e\n')).to.deep.equal([['abc"d"', 'e']]);
      expect(fieldsOf('"ab" ,e\n')).to.deep.equal([['ab ', 'e']]);
      expect(fieldsOf(' "ab",e\n')).to.deep.equal([[' "ab"', 'e']]);
    });

    it('flags a quote left open at the end of the input, keeping what was read', () => {
      expect(parse('a,b\n1,"open\nstill open,')).to.deep.equal([
        [['a', 'b'], 1, FLAG_OK],
        [['1', 'open\nstill open,'], 2, FLAG_UNTERMINATED],
      ]);
      expect(parse('"')).to.deep.equal([[[''], 1, FLAG_UNTERMINATED]]);
      expect(parse('x,"a""')).to.deep.equal([[['x', 'a"'], 1, FLAG_UNTERMINATED]]);
      expect(parse('x,"a"')).to.deep.equal([[['x', 'a'], 1, FLAG_OK]]);
    });

    it('decodes invalid UTF-8 to U+FFFD', () => {
      const bytes = Uint8Array.from([0x61, 0xff, 0x2c, 0xe2, 0x82, 0x2c, 0xc3, 0x0a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x0a]);
      expect(fieldsOf(new TextDecoder().decode(bytes))).to.deep.equal([['a\uFFFD', '\uFFFD', '\uFFFD'], ['\uFFFD\uFFFD\uFFFD']]);
      expect(parse(bytes).map((r) => r[0])).to.deep.equal([['a\uFFFD', '\uFFFD', '\uFFFD'], ['\uFFFD\uFFFD\uFFFD']]);
      expect(parse(Uint8Array.from([0x61, 0xe2, 0x82])).map((r) => r[0])).to.deep.equal([['a\uFFFD']]);
    });

    it('keeps NUL bytes and other control characters', () => {
      expect(fieldsOf('a\0b,\0\n"\0",\x01\x7f\n')).to.deep.equal([
        ['a\0b', '\0'],
        ['\0', '\x01\x7f'],
      ]);
    });

    it('decodes multibyte characters, astral ones included', () => {
      expect(fieldsOf('Beyoncé,中文,"😀,🎵"\n')).to.deep.equal([['Beyoncé', '中文', '😀,🎵']]);
    });

    it('refuses writes after end, and end is idempotent', () => {
      const recs: Rec[] = [];
      const p = new CsvParser((f, l, fl) => recs.push([f, l, fl]));
      p.write(utf8('a'));
      p.end();
      p.end();
      expect(recs).to.deep.equal([[['a'], 1, 0]]);
      expect(() => p.write(utf8('b'))).to.throw(/after end/);
    });
  });

  describe('CsvParser: maxRecordChars', () => {
    const opts = { maxRecordChars: 10 };

    it('keeps records up to the limit, quotes counted, line ending not', () => {
      expect(parse('0123456789\r\n"12345678"\n', opts)).to.deep.equal([
        [['0123456789'], 1, 0],
        [['12345678'], 2, 0],
      ]);
    });

    it('drops longer records with FLAG_TOO_LONG and goes on at their real end', () => {
      expect(parse('a\n0123456789A\r\n"12345\n,6789"\nb\n"123456789",\nc\n"1234567890\nd', opts)).to.deep.equal([
        [['a'], 1, FLAG_OK],
        [[], 2, FLAG_TOO_LONG],
        [[], 3, FLAG_TOO_LONG],
        [['b'], 5, FLAG_OK],
        [[], 6, FLAG_TOO_LONG],
        [['c'], 7, FLAG_OK],
        [[], 8, FLAG_TOO_LONG],
      ]);
    });

    it('reports a long unterminated record as too long', () => {
      expect(parse('a\n"0123456789\n0123', opts)).to.deep.equal([
        [['a'], 1, FLAG_OK],
        [[], 2, FLAG_TOO_LONG],
      ]);
    });

    it('with a limit of 1, still skips empty lines', () => {
      expect(parse('\r\n\r\na\r\nbb\r\n\r\n', { maxRecordChars: 1 })).to.deep.equal([
        [['a'], 3, FLAG_OK],
        [[], 4, FLAG_TOO_LONG],
      ]);
      expect(parseChunks('\r\n\r\na\r\nbb\r\n\r\n', [1, 2, 3, 5, 7, 8, 11], { maxRecordChars: 1 })).to.deep.equal([
        [['a'], 3, FLAG_OK],
        [[], 4, FLAG_TOO_LONG],
      ]);
    });
  });

  describe('CsvParser: chunk boundaries do not matter', () => {
    const tricky = utf8(
      '\uFEFFuser_id,track_id,listen_time\r\n' +
        'u1,"t,1",2024-01-01 10:00:00\r\n' +
        '\r\n' +
        'u2,"multi\r\nline ""quoted""\nfield",é中😀\n' +
        '\n' +
        '"",x"y,"a"b\r\n' +
        'lone\rcr,"cr\r",end\r\n' +
        'u3,t3,"2024-01-01T10:00:00Z"\n' +
        'last,"unterminated, with\nnewline and 😀',
    );
    const withInvalid = Uint8Array.from([
      ...utf8('a,b\n'),
      0xe2,
      0x82,
      0x2c,
      0xf0,
      0x9f,
      0x98,
      0x0a,
      0xc3,
      0xa9,
      0xff,
      0x22,
      0xe4,
      0xb8,
      0x0d,
      0x0a,
      0xf0,
      0x9f,
      0x98,
      0x80,
      0x22,
      0x0d,
    ]);
    const longOnes = utf8('ab\r\n0123456789X\r\n"0123\n456789",y\r\nz\n"é"é,é\n\n"1234567890\n\n\n1"\nw');

    const cases: [string, Uint8Array, CsvParserOptions | undefined][] = [
      ['tricky input', tricky, undefined],
      ['invalid UTF-8', withInvalid, undefined],
      ['too-long records', longOnes, { maxRecordChars: 10 }],
    ];

    for (const [name, input, opts] of cases) {
      it(`${name}: split at every byte offset`, () => {
        const whole = parseChunks(input, [], opts);
        expect(whole.length).to.be.greaterThan(2);
        for (let cut = 0; cut <= input.length; cut++) {
          expect(parseChunks(input, [cut], opts), `cut at ${cut}`).to.deep.equal(whole);
        }
      });

      it(`${name}: split at every pair of offsets`, () => {
        const whole = parseChunks(input, [], opts);
        for (let a = 1; a < input.length; a++) {
          for (let b = a; b < input.length; b++) {
            expect(parseChunks(input, [a, b], opts), `cuts at ${a}, ${b}`).to.deep.equal(whole);
          }
        }
      });

      it(`${name}: one byte at a time`, () => {
        const cuts = Array.from({ length: input.length }, (_, i) => i);
        expect(parseChunks(input, cuts, opts)).to.deep.equal(parseChunks(input, [], opts));
      });
    }

    it('tricky input parses as intended', () => {
      expect(parse(tricky)).to.deep.equal([
        [['user_id', 'track_id', 'listen_time'], 1, 0],
        [['u1', 't,1', '2024-01-01 10:00:00'], 2, 0],
        [['u2', 'multi\r\nline "quoted"\nfield', 'é中😀'], 4, 0],
        [['', 'x"y', 'ab'], 8, 0],
        [['lone\rcr', 'cr\r', 'end'], 9, 0],
        [['u3', 't3', '2024-01-01T10:00:00Z'], 10, 0],
        [['last', 'unterminated, with\nnewline and 😀'], 11, FLAG_UNTERMINATED],
      ]);
    });

    it('decodes random bytes, invalid UTF-8 included, the same however they are chunked', () => {
      const pool = [0x61, 0x2c, 0x22, 0x0a, 0x0d, 0x80, 0xbf, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0xf0, 0x9f, 0x98, 0xff, 0xef, 0xbb];
      let state = 7;
      const rand = (n: number): number => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        return state % n;
      };
      for (let t = 0; t < 3000; t++) {
        const bytes = Uint8Array.from({ length: rand(30) }, () => pool[rand(pool.length)]);
        const cuts: number[] = [];
        for (let at = rand(4); at < bytes.length; at += 1 + rand(4)) cuts.push(at);
        const want = referenceParse(new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes));
        expect(parseChunks(bytes, cuts), JSON.stringify({ bytes: [...bytes], cuts })).to.deep.equal(want);
      }
    });

    it('agrees with the reference reading on random inputs, however they are chunked', () => {
      const alphabet = ['a', 'b', ',', '"', '\n', '\r', 'é', '😀', ' ', '\uFEFF'];
      let state = 99;
      const rand = (n: number): number => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        return state % n;
      };
      for (let t = 0; t < 3000; t++) {
        let s = '';
        for (let i = rand(40); i > 0; i--) s += alphabet[rand(alphabet.length)];
        const bytes = utf8(s);
        const cuts: number[] = [];
        for (let at = rand(5); at < bytes.length; at += 1 + rand(6)) cuts.push(at);
        const opts = rand(2) === 0 ? undefined : { maxRecordChars: 1 + rand(8) };
        const want = referenceParse(s, opts?.maxRecordChars);
        expect(parseChunks(bytes, [], opts), JSON.stringify({ s, opts })).to.deep.equal(want);
        expect(parseChunks(bytes, cuts, opts), JSON.stringify({ s, cuts, opts })).to.deep.equal(want);
      }
    });
  });

  describe('CsvParser: bounded memory', function () {
    this.timeout(120_000);

    /**
     * Feeds parseCsv a prefix, then ~100 MB of `unit` repeated, then a suffix, generated on
     * demand. Returns the peak heap growth seen between chunks and how many units were sent.
     */
    async function feed100MB(prefix: string, unit: string, suffix: string, recs: Rec[]): Promise<{ growth: number; units: number }> {
      const block = Buffer.from(unit.repeat(Math.ceil(65536 / unit.length)));
      const blocks = Math.ceil(100_000_000 / block.length);
      const parts = [Buffer.from(prefix), ...Array<Buffer>(blocks).fill(block), Buffer.from(suffix)];
      const base = process.memoryUsage().heapUsed;
      let growth = 0;
      let next = 0;
      const source = new Readable({
        read() {
          growth = Math.max(growth, process.memoryUsage().heapUsed - base);
          this.push(next < parts.length ? parts[next++] : null);
        },
      });
      await parseCsv(source, (fields, line, flag) => recs.push([fields.slice(0, 3), line, flag]));
      return { growth, units: (blocks * block.length) / unit.length };
    }

    it('reads a 100 MB line without a newline in bounded memory', async () => {
      const recs: Rec[] = [];
      const { growth } = await feed100MB('h1,h2\nx,', 'abcdefgh', '\nnext,row\n', recs);
      expect(recs).to.deep.equal([
        [['h1', 'h2'], 1, FLAG_OK],
        [[], 2, FLAG_TOO_LONG],
        [['next', 'row'], 3, FLAG_OK],
      ]);
      expect(growth).to.be.lessThan(50e6);
    });

    it('tracks quotes through a 100 MB record to find its real end', async () => {
      const recs: Rec[] = [];
      // Commas, newlines and escaped quotes inside one quoted field: none of them ends it.
      const { growth, units } = await feed100MB('h\n"', 'a,b\n""c\n', '",tail\nnext\n', recs);
      expect(recs).to.deep.equal([
        [['h'], 1, FLAG_OK],
        [[], 2, FLAG_TOO_LONG],
        [['next'], 2 + 2 * units + 1, FLAG_OK],
      ]);
      expect(growth).to.be.lessThan(50e6);
    });
  });

  it('detachField returns an equal string', () => {
    const [[fields]] = parse('short,a-track-id-longer-than-13,,😀é中\n');
    expect(fields.map(detachField)).to.deep.equal(fields);
  });

  describe('parseCsv', () => {
    it('parses a stream and counts its bytes', async () => {
      const recs: Rec[] = [];
      const input = 'a,b\r\n"1\n2",3\n';
      const { bytes } = await parseCsv(Readable.from([Buffer.from(input.slice(0, 7)), Buffer.from(input.slice(7))]), (f, l, fl) =>
        recs.push([f, l, fl]),
      );
      expect(bytes).to.equal(Buffer.byteLength(input));
      expect(recs).to.deep.equal([
        [['a', 'b'], 1, 0],
        [['1\n2', '3'], 2, 0],
      ]);
    });

    it('accepts string chunks', async () => {
      const recs: string[][] = [];
      await parseCsv(Readable.from(['a,é\n', 'b,c'], { objectMode: false }), (f) => recs.push(f));
      expect(recs).to.deep.equal([
        ['a', 'é'],
        ['b', 'c'],
      ]);
    });

    it('rejects when the source is destroyed midway, without hanging', async function () {
      this.timeout(5000);
      let n = 0;
      const source = new Readable({
        read() {
          if (++n === 5) this.destroy(new Error('connection reset'));
          else this.push(Buffer.from(`${n},x\n`));
        },
      });
      const recs: string[][] = [];
      let error: unknown;
      await parseCsv(source, (f) => recs.push(f)).catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(Error);
      expect((error as Error).message).to.equal('connection reset');
      expect(recs.length).to.be.at.most(4);
    });

    it('rejects when the source is destroyed without an error', async function () {
      this.timeout(5000);
      const source = new Readable({ read() {} });
      source.push(Buffer.from('a,b\n'));
      setImmediate(() => source.destroy());
      let error: unknown;
      await parseCsv(source, () => {}).catch((err: unknown) => (error = err));
      expect((error as NodeJS.ErrnoException).code).to.equal('ERR_STREAM_PREMATURE_CLOSE');
    });

    it('rejects with the error onRecord throws, and stops reading', async () => {
      let reads = 0;
      const source = new Readable({
        read() {
          reads++;
          this.push(reads < 1000 ? Buffer.from('a,b\n'.repeat(256)) : null);
        },
      });
      let error: unknown;
      await parseCsv(source, () => {
        throw new Error('consumer failed');
      }).catch((err: unknown) => (error = err));
      expect((error as Error).message).to.equal('consumer failed');
      expect(reads).to.be.lessThan(100);
    });

    it('stops on abort', async function () {
      this.timeout(5000);
      const controller = new AbortController();
      const source = new Readable({
        read() {
          setTimeout(() => this.push(Buffer.from('a,b\n')), 1);
        },
      });
      let records = 0;
      let error: unknown;
      await parseCsv(
        source,
        () => {
          if (++records === 10) controller.abort();
        },
        { signal: controller.signal },
      ).catch((err: unknown) => (error = err));
      expect((error as Error).name).to.equal('AbortError');
      expect(source.destroyed).to.equal(true);
    });
  });

  describe('CsvParseStream', () => {
    function lines(n: number): string {
      let s = 'id,text\n';
      for (let i = 1; i <= n; i++) s += i % 7 === 0 ? `${i},"multi\nline ${i}"\n` : `${i},plain ${i}\n`;
      return s;
    }

    it('emits one batch of records per chunk, with lines and flags', async () => {
      const batches: CsvBatch[] = [];
      await pipeline(
        Readable.from([Buffer.from('a,b\n1,"2'), Buffer.from('\n'), Buffer.from('3"\n\n4,5\n"x')]),
        new CsvParseStream(),
        new Writable({
          objectMode: true,
          write(batch: CsvBatch, _e, cb) {
            batches.push(batch);
            cb();
          },
        }),
      );
      expect(batches).to.deep.equal([
        { fields: [['a', 'b']], lines: [1], flags: [0] },
        {
          fields: [
            ['1', '2\n3'],
            ['4', '5'],
          ],
          lines: [2, 5],
          flags: [0, 0],
        },
        { fields: [['x']], lines: [6], flags: [FLAG_UNTERMINATED] },
      ]);
    });

    it('delivers every record in order to a slow consumer, holding back the source', async function () {
      this.timeout(30_000);
      const text = Buffer.from(lines(20_000));
      let produced = 0;
      let consumed = 0;
      let maxLead = 0;
      let at = 0;
      const source = new Readable({
        highWaterMark: 1024,
        read() {
          if (at >= text.length) {
            this.push(null);
            return;
          }
          produced++;
          this.push(text.subarray(at, at + 1024));
          at += 1024;
        },
      });
      const got: { fields: string[]; line: number }[] = [];
      const parser = new CsvParseStream();
      const consume = (async () => {
        for await (const batch of parser as AsyncIterable<CsvBatch>) {
          consumed++;
          maxLead = Math.max(maxLead, produced - consumed);
          batch.fields.forEach((f, i) => got.push({ fields: f, line: batch.lines[i] }));
          if (consumed % 10 === 0) await sleep(5);
        }
      })();
      await Promise.all([pipeline(source, parser), consume]);

      expect(got).to.have.length(20_001);
      let line = 2;
      for (let i = 1; i <= 20_000; i++) {
        const r = got[i];
        const multi = i % 7 === 0;
        expect(r.fields).to.deep.equal([String(i), multi ? `multi\nline ${i}` : `plain ${i}`]);
        expect(r.line).to.equal(line);
        line += multi ? 2 : 1;
      }
      expect(maxLead).to.be.lessThan(100);
      expect(produced).to.be.greaterThan(300);
    });

    it('rejects the pipeline when the source is destroyed midway, without hanging', async function () {
      this.timeout(5000);
      let n = 0;
      const source = new Readable({
        read() {
          if (++n === 20) this.destroy(new Error('socket hang up'));
          else this.push(Buffer.from(`${n},x\n`));
        },
      });
      const got: number[] = [];
      let error: unknown;
      await pipeline(source, new CsvParseStream(), async (batches: AsyncIterable<CsvBatch>) => {
        for await (const b of batches) {
          for (const l of b.lines) got.push(l);
          await sleep(1);
        }
      }).catch((err: unknown) => (error = err));
      expect((error as Error).message).to.equal('socket hang up');
      expect(got).to.deep.equal(got.map((_, i) => i + 1));
    });
  });
});
