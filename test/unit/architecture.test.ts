// The house's shape, checked: imports point one way (cli -> pipeline -> stages -> domain,
// cli -> adapters), stages never import adapters, and no module imports itself round a cycle.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../support/cli.js';
import { ALLOWED, cycles, forbiddenImports, importGraph, layerOf } from '../support/imports.js';

describe('architecture: the direction of imports in lib/', () => {
  const graph = importGraph(join(REPO, 'lib'));

  it('every module lives in a known layer', () => {
    const unknown = [...graph.keys()].filter((m) => !(layerOf(m) in ALLOWED));
    expect(unknown).to.deep.equal([]);
  });

  it('no import goes against the layers (stages never import adapters, the pipeline neither)', () => {
    expect(forbiddenImports(graph)).to.deep.equal([]);
  });

  it('has no import cycle', () => {
    expect(cycles(graph)).to.deep.equal([]);
  });

  it('the checks themselves catch a cycle and a forbidden import', () => {
    const bad = new Map([
      ['stages/a.ts', ['adapters/lake/s3.ts', 'stages/b.ts']],
      ['stages/b.ts', ['stages/a.ts']],
      ['adapters/lake/s3.ts', ['domain/lake.ts']],
      ['domain/lake.ts', []],
    ]);
    expect(forbiddenImports(bad)).to.deep.equal(['stages/a.ts -> adapters/lake/s3.ts']);
    expect(cycles(bad)).to.deep.equal([['stages/a.ts', 'stages/b.ts']]);
  });
});

describe('architecture: one reader of the environment', () => {
  it('only lib/cli/config.ts reads process.env (the embedded server passes PATH on to its child; the test hooks get theirs from the config)', () => {
    const readers = [...importGraph(join(REPO, 'lib')).keys()].filter((m) =>
      /\bprocess\.env\b/.test(readFileSync(join(REPO, 'lib', m), 'utf8').replace(/^\s*(\/\/|\*).*$/gm, '')),
    );
    expect(readers.sort()).to.deep.equal(['adapters/warehouse/embedded/process.ts', 'cli/config.ts']);
  });
});
