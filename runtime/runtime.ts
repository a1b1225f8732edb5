// The single shell that feeds inputs to a core state machine and executes its effects
// through the drivers it is given. The simulator and the real node service run this same
// code; only the drivers differ.

import { assert } from "../core/assert.ts";
import type { StepResult } from "../core/types.ts";

export interface RuntimeOptions<State, Input, Effect> {
  readonly state: State;
  readonly step: (state: State, nowMs: number, input: Input) => StepResult<State, Effect>;
  /** Executes one effect; effects of a step run in the order the core returned them. */
  readonly execute: (effect: Effect) => void;
  readonly nowMs: () => number;
  /** Sees every step, e.g. to record a trace; must not deliver inputs itself. */
  readonly observe?: (nowMs: number, input: Input, result: StepResult<State, Effect>) => void;
}

export class Runtime<State, Input, Effect> {
  #state: State;
  #stepping = false;
  readonly #options: RuntimeOptions<State, Input, Effect>;

  constructor(options: RuntimeOptions<State, Input, Effect>) {
    this.#options = options;
    this.#state = options.state;
  }

  get state(): State {
    return this.#state;
  }

  /** Steps the core with `input` and executes the resulting effects before returning. */
  deliver(input: Input): void {
    // A driver must queue what it learns while effects run, never re-enter the core.
    assert(!this.#stepping, "runtime re-entered while executing effects");
    this.#stepping = true;
    try {
      const nowMs = this.#options.nowMs();
      const result = this.#options.step(this.#state, nowMs, input);
      this.#state = result.state;
      this.#options.observe?.(nowMs, input, result);
      for (const effect of result.effects) this.#options.execute(effect);
    } finally {
      this.#stepping = false;
    }
  }
}
