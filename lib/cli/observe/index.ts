// The observers a configuration asks for.

import type { Config } from '../config.js';
import type { RunObserver } from './observer.js';

export function runObservers(_config: Readonly<Config>, _warn: (message: string) => void): RunObserver[] {
  return [];
}
