import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ReportData, ReportRun } from '../../../lib/cli/report/data.js';
import { renderText } from '../../../lib/cli/report/text.js';
import { CHART_TITLES, renderHtml } from '../../../lib/cli/report/html.js';
import { esc, niceTicks } from '../../../lib/cli/report/svg.js';

const REPO = join(import.meta.dirname, '..', '..', '..');

function csv(name: string): Record<string, string>[] {
  const [head, ...lines] = readFileSync(join(REPO, 'fixtures', 'tiny', 'expected', name), 'utf8')
    .trim()
    .split('\n');
  const cols = head.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i], v])));
}

/** The tiny fixture's expected KPIs, as the report reads them. */
export function tinyData(dates: string[], runs: ReportRun[] | null = null): ReportData {
  const hourly = csv('hourly_kpis.csv')
    .filter((r) => dates.includes(r.listen_date))
    .map((r) => ({
      date: r.listen_date,
      hour: Number(r.listen_hour),
      listens: Number(r.listen_counts),
      listeners: Number(r.unique_listeners),
      topArtist: r.top_artist || null,
      sessionsPerUser: Number(r.avg_sessions_per_user),
      diversity: Number(r.diversity_index),
      ageGroup: r.most_engaged_age_group || null,
    }));
  const genres = csv('genre_level_kpis.csv')
    .filter((r) => dates.includes(r.listen_date))
    .map((r) => ({
      date: r.listen_date,
      genre: r.track_genre,
      listens: Number(r.listen_count),
      popularity: Number(r.popularity_index),
      averageDuration: Number(r.average_duration),
      topTrack: r.most_popular_track_id,
    }))
    .sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : b.listens - a.listens || (a.genre < b.genre ? -1 : 1)));
  return { schema: 'reporting_schema', dates, latestDate: '2024-06-02', hourly, genres, runs };
}

export const RUNS: ReportRun[] = [
  {
    runId: 'r2',
    command: 'run',
    startedAt: '2024-06-03T02:00:00.000Z',
    finishedAt: '2024-06-03T02:00:01.250Z',
    status: 'failed',
    exitCode: 65,
    errorCode: 'MKPI_SCHEMA',
    dryRun: false,
    rowsRead: 0,
    completeRows: 0,
    rejects: {},
    durationMs: 1250,
  },
  {
    runId: 'r1',
    command: 'run',
    startedAt: '2024-06-02T02:00:00.000Z',
    finishedAt: '2024-06-02T02:00:03.500Z',
    status: 'ok',
    exitCode: 0,
    errorCode: null,
    dryRun: false,
    rowsRead: 9,
    completeRows: 8,
    rejects: { unknown_track: 1 },
    durationMs: 3500,
  },
];

describe('report renderers', () => {
  it('the terminal report of the tiny fixture’s latest date, exactly', () => {
    expect(renderText(tinyData(['2024-06-02']))).to.equal(
      [
        'musickpi report   2024-06-02   schema reporting_schema',
        '',
        'Listening by hour (UTC)',
        '  hour   listens  listeners  sessions/user  diversity  top artist  top age group',
        '  -----  -------  ---------  -------------  ---------  ----------  -------------',
        '  00:00        2          1           2.00       1.00  Bob         66+',
        '  2 listens; busiest hour 00:00 (2)',
        '',
        'Top genres',
        '  genre  listens  share  avg length  top track',
        '  -----  -------  -----  ----------  ---------',
        '  pop          1  50.0%        1:40  t2',
        '  rock         1  50.0%        5:00  t3',
        '',
        'Last runs',
        '  no run history (this warehouse has no musickpi_runs table)',
        '',
      ].join('\n'),
    );
  });

  it('the terminal report of both dates, with the last runs, exactly', () => {
    expect(renderText(tinyData(['2024-06-01', '2024-06-02'], RUNS))).to.equal(
      [
        'musickpi report   2024-06-01 to 2024-06-02   schema reporting_schema',
        '',
        'Listening by hour (UTC)',
        '  date        hour   listens  listeners  sessions/user  diversity  top artist  top age group',
        '  ----------  -----  -------  ---------  -------------  ---------  ----------  -------------',
        '  2024-06-01  10:00        5          3           1.67       0.60  Bob         18-25',
        '  2024-06-01  11:00        1          1           1.00       1.00  -           66+',
        '  2024-06-02  00:00        2          1           2.00       1.00  Bob         66+',
        '  8 listens; busiest hour 2024-06-01 10:00 (5)',
        '',
        'Top genres',
        '  date        genre    listens  share  avg length  top track',
        '  ----------  -------  -------  -----  ----------  ---------',
        '  2024-06-01  pop            3  50.0%        2:47  t1',
        '  2024-06-01  rock           2  33.3%        5:00  t3',
        '  2024-06-01  ambient        1  16.7%        1:00  t4',
        '  2024-06-02  pop            1  50.0%        1:40  t2',
        '  2024-06-02  rock           1  50.0%        5:00  t3',
        '',
        'Last runs',
        '  started (UTC)         command  status  exit   time  rows read  rejected  error',
        '  --------------------  -------  ------  ----  -----  ---------  --------  -----------',
        '  2024-06-03 02:00:00Z  run      failed    65  1.3 s          0         0  MKPI_SCHEMA',
        '  2024-06-02 02:00:00Z  run      ok         0  3.5 s          9         1',
        '  a run that could not reach its warehouse could not record itself, and is missing here',
        '',
      ].join('\n'),
    );
  });

  it('the page: every chart with its title and axes, no script, no external reference', () => {
    const html = renderHtml(tinyData(['2024-06-01', '2024-06-02'], RUNS), { generatedAt: new Date('2024-06-03T08:00:00Z') });
    const svgs = html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
    expect(svgs).to.have.length(5);
    for (const title of Object.values(CHART_TITLES))
      expect(html)
        .to.contain(`<title id="`)
        .and.to.contain(`>${esc(title)}</title>`);
    for (const svg of svgs) {
      expect(svg).to.match(/<text [^>]*class="label">[^<]+<\/text>.*<text transform="[^"]*rotate\(-90\)"[^>]*class="label">[^<]+<\/text>/s);
      expectWellFormed(svg);
    }
    expect(html).not.to.match(/<script|<link|<img|@import|url\(|https?:\/\/(?!www\.w3\.org\/2000\/svg)/i);
    expect(html.match(/<table>/g)).to.have.length(5);
    expect(Buffer.byteLength(html)).to.be.below(40_000);
  });

  it('says "no run history" when the warehouse keeps none', () => {
    const html = renderHtml(tinyData(['2024-06-02']), { generatedAt: new Date('2024-06-03T08:00:00Z') });
    expect(html.match(/no run history/g)).to.have.length(2);
    expect(html.match(/<svg/g)).to.have.length(3);
  });

  it('escapes every value: a hostile artist, genre or error code stays text', () => {
    const evil = '<script>alert("x")</script>&\'';
    const d = tinyData(['2024-06-01'], [{ ...RUNS[0], errorCode: evil, command: evil, rejects: { [evil]: 2 } }]);
    d.hourly[0].topArtist = evil;
    d.hourly[0].ageGroup = evil;
    d.genres[0].genre = evil;
    d.genres[0].topTrack = evil;
    d.schema = evil;
    const html = renderHtml(d, { generatedAt: new Date('2024-06-03T08:00:00Z') });
    expect(html).not.to.contain('<script');
    expect(html).not.to.contain('"x")');
    expect(html).to.contain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;');
    for (const svg of html.match(/<svg[\s\S]*?<\/svg>/g) ?? []) expectWellFormed(svg);
  });

  it('round ticks', () => {
    expect(niceTicks(5)).to.deep.equal([0, 1, 2, 3, 4, 5]);
    expect(niceTicks(197)).to.deep.equal([0, 50, 100, 150, 200]);
    expect(niceTicks(0.5)).to.deep.equal([0, 0.1, 0.2, 0.3, 0.4, 0.5]);
    expect(niceTicks(0)).to.deep.equal([0, 1]);
  });
});

/** A small XML check: tags balance, attributes are quoted, no raw & or < in text. */
export function expectWellFormed(xml: string): void {
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|(<)|(&(?!(?:amp|lt|gt|quot|#39);))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(xml))) {
    if (m[5] || m[6]) throw new Error(`not well-formed at ${m.index}: ${xml.slice(m.index, m.index + 40)}`);
    if (!m[2]) continue;
    if (m[1]) expect(stack.pop(), `closing ${m[2]} at ${m.index}`).to.equal(m[2]);
    else if (!m[4]) stack.push(m[2]);
  }
  expect(stack, 'unclosed tags').to.deep.equal([]);
}
