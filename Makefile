# musickpi — common tasks. Needs only Node 20, npm and make.
SHELL := /bin/bash
DEMO_LAKE := .musickpi/demo-lake
BIN := ./bin/musickpi

.PHONY: all install build lint test test-faults demo bench bench-full clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

build: install
	npm run build

lint: install
	npm run lint

test: install
	npm test

# The reliability suites on their own (docs/reliability.md): a crash at every fault point,
# SIGINT/SIGTERM in every stage, flaky S3 and PostgreSQL, concurrent runs, stream stages.
# `make test` runs them as well, but spawns the CLI for a smoke subset of the fault points and
# signals only; MKPI_FULL_FAULTS=1 here takes all of them.
RELIABILITY_TESTS := test/unit/archive-etag.test.ts test/integration/stream-stages.test.ts \
	test/integration/ledger-upgrade.test.ts test/integration/flaky-s3.test.ts test/integration/flaky-pg.test.ts \
	test/e2e/faults.test.ts test/e2e/signals.test.ts test/e2e/concurrency.test.ts
test-faults: build
	MKPI_FULL_FAULTS=1 npx mocha --no-config -n import=tsx --require test/support/global-fixtures.ts \
	  --timeout 60000 $(RELIABILITY_TESTS)

# Runs the pipeline on a copy of the bundled sample lake with the embedded PostgreSQL, shows the KPIs,
# then writes the report page of the sample lake (one self-contained HTML file) and prints its path.
DEMO_REPORT := .musickpi/demo-report.html
demo: build
	rm -rf $(DEMO_LAKE) && mkdir -p .musickpi && cp -rp fixtures/sample $(DEMO_LAKE)
	$(BIN) run --lake $(DEMO_LAKE) --home .musickpi/home
	$(BIN) query --quiet --home .musickpi/home 'select * from reporting_schema.hourly_kpis order by listen_date, listen_hour limit 12'
	$(BIN) query --quiet --home .musickpi/home 'select * from reporting_schema.genre_level_kpis order by listen_date, listen_count desc, track_genre limit 12'
	$(BIN) report --quiet --home .musickpi/home --start 2024-06-01 --end 2024-06-03 --html $(DEMO_REPORT) > /dev/null
	$(BIN) report --quiet --home .musickpi/home
	$(BIN) runs --quiet --home .musickpi/home
	@echo "report page: $(abspath $(DEMO_REPORT))"

# The benchmark of issues 3 and 12, which doubles as a differential test against DuckDB: every lake
# shape, the 10M / 20-day and 30M / 90-day backfills included (20-40 min, several GB of lakes cached
# under tmp/bench/), regenerating docs/performance.md. BENCH_ARGS=--quick: small lakes, for a smoke
# test; BENCH_ARGS="--shapes daily,bigfile --docs /tmp/p.md": some shapes only. bench-full: the same.
bench: build
	npm run bench -- --full $(BENCH_ARGS)

bench-full: bench

clean:
	rm -rf dist .musickpi
