import { expect } from 'chai';
import { RUNS, expectWellFormed, tinyData } from './fixtures.js';
import { renderText } from '../../../lib/cli/report/text.js';
import { CHART_TITLES, renderHtml } from '../../../lib/cli/report/html.js';
import { esc, niceTicks } from '../../../lib/cli/report/svg.js';

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
