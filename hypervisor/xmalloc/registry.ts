/**
 * The engines by name. Add an engine: write one file implementing
 * {@link XmallocEngine} and exporting an {@link EngineDescriptor}, then list it here.
 *
 * @module
 */

import { buddyEngine } from "./buddy.ts";
import type { EngineDescriptor } from "./engine.ts";
import { firstFitEngine } from "./first_fit.ts";
import { slubEngine } from "./slub.ts";
import { tlsfEngine } from "./tlsf.ts";
import { tlsf2008Engine } from "./tlsf_2008.ts";

/** Every engine, in the order comparisons print them. */
export const ENGINES: readonly EngineDescriptor[] = [
  firstFitEngine,
  tlsf2008Engine,
  tlsfEngine,
  slubEngine,
  buddyEngine,
];

/** Names of every engine. */
export const ENGINE_NAMES: readonly string[] = ENGINES.map((e) => e.name);

/**
 * The engine called `name`.
 *
 * @throws {RangeError} naming the known engines if there is none
 */
export function engineDescriptor(name: string): EngineDescriptor {
  const found = ENGINES.find((e) => e.name === name);
  if (!found) {
    throw new RangeError(`Unknown engine "${name}": expected one of ${ENGINE_NAMES.join(", ")}`);
  }
  return found;
}
