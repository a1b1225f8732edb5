// What a mirror module does not replicate (`<notreplicated>`, docs/mirror.md "Not
// replicated"): paths relative to the replicated directory, each rule a path (that path and
// everything below it) or a regular expression searched in the relative path (SafeKit's
// POSIX ERE, compiled as a JavaScript RegExp: core/config/sections/rfs.ts refuses what the
// two would read differently), a leading `!` inverting it.

import { isWithin } from "./disk-ops.ts";

export interface Exclusion {
  readonly path: string | null;
  readonly regex: string | null;
  readonly inverted: boolean;
  /** In a module with several replicated directories (volumes.ts), the volume whose rule
   *  this is: it applies to paths below it, relative to it. Absent: the whole tree. */
  readonly within?: string;
}

export type Excludes = (path: string) => boolean;

const compiled = new WeakMap<readonly Exclusion[], Excludes>();
const none: Excludes = () => false;

/** Whether `path` (relative; "" is the root, never excluded) is left out of replication. */
export function excluderOf(rules: readonly Exclusion[] | undefined): Excludes {
  if (rules === undefined || rules.length === 0) return none;
  const known = compiled.get(rules);
  if (known !== undefined) return known;
  const tests = rules.map((rule): Excludes => {
    const test = ruleTest(rule);
    const within = rule.within;
    if (within === undefined) return test;
    const prefix = `${within}/`;
    return (path) => path.startsWith(prefix) && test(path.slice(prefix.length));
  });
  const excludes: Excludes = (path) => path !== "" && tests.some((test) => test(path));
  compiled.set(rules, excludes);
  return excludes;
}

function ruleTest(rule: Exclusion): Excludes {
  if (rule.path !== null) {
    const prefix = rule.path;
    return (path) => isWithin(path, prefix);
  }
  const pattern = new RegExp(rule.regex ?? "");
  return rule.inverted ? (path) => !pattern.test(path) : (path) => pattern.test(path);
}
