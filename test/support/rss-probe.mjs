// Preloaded into a CLI the tests spawn (NODE_OPTIONS=--import=<this file>): prints the process's
// peak resident set size when it exits. getrusage's ru_maxrss covers every thread of the process
// (worker threads included) for its whole life, so no sampling can miss the peak. Only active
// with MKPI_TEST_RSS_PROBE set, so a stray --import changes nothing.

if (process.env.MKPI_TEST_RSS_PROBE) {
  process.on('exit', () => {
    process.stderr.write(`\nMKPI_TEST_MAXRSS_KB=${process.resourceUsage().maxRSS}\n`);
  });
}
