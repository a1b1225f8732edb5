// Attribute value grammars shared by every SafeKit file: times with units, booleans,
// macros. A pure module: it performs no I/O.

export type TimeUnit = "us" | "ms" | "s" | "m" | "h" | "d";

export const msPerUnit: Readonly<Record<TimeUnit, number>> = { us: 0.001, ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly expected: string };

/**
 * `700ms`, `24h`, or a bare number in the attribute's own unit (`pulse="700"` is 700 ms,
 * `loop_interval="24"` is 24 h). As in SafeKit, a non-zero value that rounds to 0 in the
 * attribute's unit is refused (`loop_interval="10m"`: the unit is hours).
 */
export function parseTime(text: string, unit: TimeUnit): Parsed<number> {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$/.exec(text);
  const expected = `a duration such as 700ms, 30s or 24h (a bare number is in ${unit})`;
  if (match === null) return { ok: false, expected };
  const amount = Number(match[1]);
  const ms = amount * msPerUnit[(match[2] as TimeUnit | undefined) ?? unit];
  if (!Number.isFinite(ms)) return { ok: false, expected };
  if (ms > 0 && Math.round(ms / msPerUnit[unit]) === 0) return { ok: false, expected: `at least 1${unit}: this attribute counts in ${unit}, and ${text.trim()} rounds to 0` };
  return { ok: true, value: ms };
}

const truthy = new Set(["on", "yes", "true", "1"]);
const falsy = new Set(["off", "no", "false", "0"]);

export function parseBoolean(text: string): Parsed<boolean> {
  const word = text.trim().toLowerCase();
  if (truthy.has(word)) return { ok: true, value: true };
  if (falsy.has(word)) return { ok: true, value: false };
  return { ok: false, expected: "on or off (also yes/no, true/false)" };
}

export function parseInteger(text: string, min: number, max: number): Parsed<number> {
  const trimmed = text.trim();
  const value = Number(trimmed);
  if (!/^-?\d+$/.test(trimmed) || !Number.isSafeInteger(value) || value < min || value > max) {
    return { ok: false, expected: `a whole number from ${min} to ${max}` };
  }
  return { ok: true, value };
}

/** Expands `%NAME%` from the module's macros, then from the environment. */
export function expandMacros(
  text: string,
  macros: ReadonlyMap<string, string>,
  environment: Readonly<Record<string, string | undefined>>,
): { readonly text: string; readonly undefinedNames: readonly string[] } {
  const undefinedNames: string[] = [];
  const expanded = text.replace(/%([A-Za-z_][A-Za-z0-9_]*)%/g, (whole, name: string) => {
    const value = macros.get(name) ?? environment[name];
    if (value === undefined) {
      undefinedNames.push(name);
      return whole;
    }
    return value;
  });
  return { text: expanded, undefinedNames };
}
