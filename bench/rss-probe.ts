// Preloaded into the benchmark's child processes (node --import <this file>): prints the
// process's peak resident set size (and CPU time) when it exits. getrusage's ru_maxrss covers every thread of
// the process (worker threads included) for its whole life, so no sampling can miss the peak.
// Only active when MKPI_BENCH_PROBE is set, so a stray --import changes nothing.

if (process.env.MKPI_BENCH_PROBE) {
  process.on('exit', () => {
    // maxRSS is in kilobytes (Linux ru_maxrss); CPU time is user + system, all threads.
    const r = process.resourceUsage();
    process.stderr.write(`\nMKPI_BENCH_MAXRSS_KB=${r.maxRSS} MKPI_BENCH_CPU_MS=${Math.round((r.userCPUTime + r.systemCPUTime) / 1000)}\n`);
  });
}

export {};
