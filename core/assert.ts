// Assertions for programmer errors. A pure module: it performs no I/O.
//
// An assertion failure means the code itself is wrong (a broken invariant), never that the
// world misbehaved: operating errors (bad config, lost peer) are values returned to callers.
// Never catch an AssertionError to carry on.

export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Crashes loudly when `condition` is false. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Marks a switch branch that cannot be reached when the union is handled exhaustively. */
export function unreachable(value: never): never {
  throw new AssertionError(`unreachable: ${JSON.stringify(value)}`);
}
