// The import graph of lib/, read with the TypeScript compiler's own pre-processor, and the
// rules the house keeps (README, "How it is built").
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';

export type Graph = Map<string, string[]>;

/** Every .ts module under `root` and the modules of `root` it imports (relative specifiers only). */
export function importGraph(root: string): Graph {
  const graph: Graph = new Map();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.endsWith('.ts')) {
        const info = ts.preProcessFile(readFileSync(full, 'utf8'), true, true);
        const deps = info.importedFiles
          .map((f) => f.fileName)
          .filter((s) => s.startsWith('.'))
          .map((s) => relative(root, normalize(join(dirname(full), s.replace(/\.js$/, '.ts')))));
        graph.set(relative(root, full), deps);
      }
    }
  };
  walk(root);
  return graph;
}

/** The import cycles of a graph, each as a list of modules (one per strongly connected component). */
export function cycles(graph: Graph): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** Which layers each layer may import (a module's layer is its first folder under lib/). */
export const ALLOWED: Record<string, readonly string[]> = {
  domain: ['domain'],
  stages: ['domain', 'stages'],
  pipeline: ['domain', 'stages', 'pipeline'],
  adapters: ['domain', 'adapters'],
  testing: ['domain', 'testing'],
  cli: ['domain', 'stages', 'pipeline', 'adapters', 'testing', 'cli'],
};

export function layerOf(module: string): string {
  return module.split(/[\\/]/)[0];
}

/** Imports that go against the direction of the layers, as "from -> to". */
export function forbiddenImports(graph: Graph): string[] {
  const bad: string[] = [];
  for (const [from, deps] of graph) {
    const allowed = ALLOWED[layerOf(from)];
    for (const to of deps) {
      if (!allowed || !allowed.includes(layerOf(to))) bad.push(`${from} -> ${to}`);
    }
  }
  return bad;
}
