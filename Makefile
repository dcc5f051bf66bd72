# musickpi — common tasks. Needs only Node 20, npm and make.
SHELL := /bin/bash
DEMO_LAKE := .musickpi/demo-lake
BIN := ./bin/musickpi

.PHONY: all install build test test-faults demo bench clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

build: install
	npm run build

test: install
	npm test

# Runs the pipeline on a copy of the bundled sample lake with the embedded PostgreSQL, then shows the KPIs.
demo: build
	rm -rf $(DEMO_LAKE) && mkdir -p .musickpi && cp -rp fixtures/sample $(DEMO_LAKE)
	$(BIN) run --lake $(DEMO_LAKE)
	$(BIN) query --quiet 'select * from reporting_schema.hourly_kpis order by listen_date, listen_hour limit 12'
	$(BIN) query --quiet 'select * from reporting_schema.genre_level_kpis order by listen_date, listen_count desc, track_genre limit 12'

bench: build
	npm run bench

clean:
	rm -rf dist .musickpi
