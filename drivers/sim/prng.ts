// Seeded pseudo-random numbers for the simulator (sfc32, seeded through splitmix32).
// One seed makes one root generator; every driver forks its own by name, so adding draws
// in one driver does not shift the numbers another driver sees.

import { assert } from "../../core/assert.ts";
import { hashString32 } from "../../core/hash.ts";

function splitmix32(state: number): () => number {
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Prng {
  readonly seed: number;
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    assert(Number.isInteger(seed) && seed >= 0 && seed <= 0xffff_ffff, `seed ${seed} is not a 32-bit unsigned integer`);
    this.seed = seed;
    const next = splitmix32(seed);
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next();
  }

  /** A generator of its own for `name`, independent of how many numbers this one drew. */
  fork(name: string): Prng {
    return new Prng((Math.imul(this.seed ^ hashString32(name), 0x2c1b3c6d) + hashString32(name)) >>> 0);
  }

  /** Uniform unsigned 32-bit integer. */
  u32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    assert(Number.isInteger(min) && Number.isInteger(max) && min <= max, `int(${min}, ${max}) invalid`);
    // float() carries 32 random bits, so a wider range could not be drawn uniformly.
    assert(max - min < 0x1_0000_0000, `int(${min}, ${max}) spans more than 2^32 values`);
    return min + Math.floor(this.float() * (max - min + 1));
  }

  chance(probability: number): boolean {
    return probability > 0 && this.float() < probability;
  }

  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, "pick from an empty list");
    return items[this.int(0, items.length - 1)]!;
  }
}
