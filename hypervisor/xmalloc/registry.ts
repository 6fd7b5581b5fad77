/**
 * The engines by name. Add an engine: write one file implementing
 * {@link XmallocEngine} and exporting an {@link EngineDescriptor}, then list it here.
 *
 * @module
 */

import { buddyEngine } from "./buddy.ts";
import type { EngineDescriptor } from "./engine.ts";
import { StateError } from "../../src/state_codec.ts";
import { firstFitEngine } from "./first_fit.ts";
import { slubEngine } from "./slub.ts";
import { tlsfEngine } from "./tlsf.ts";
import { tlsf2008Engine } from "./tlsf_2008.ts";

/**
 * `d`, its `load` answering a state it cannot read with a StateError only: a damaged
 * state (from a file or a journal) may make an engine's own reads throw anything.
 */
function loadingSafely(d: EngineDescriptor): EngineDescriptor {
  return {
    ...d,
    load(context, r) {
      try {
        return d.load(context, r);
      } catch (e) {
        if (e instanceof StateError) throw e;
        throw new StateError(
          `The state of a ${d.name} engine does not load: ${(e as Error).message}`,
        );
      }
    },
  };
}

/** Every engine, in the order comparisons print them. */
export const ENGINES: readonly EngineDescriptor[] = [
  firstFitEngine,
  tlsf2008Engine,
  tlsfEngine,
  slubEngine,
  buddyEngine,
].map(loadingSafely);

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
