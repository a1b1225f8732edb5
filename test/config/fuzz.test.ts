// The configuration parser never throws anything but its own typed ConfigError and never
// hangs, whatever it is fed: mutated valid files, random bytes, huge or deep input.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { readClusterXml } from "../../core/config/cluster-xml.ts";
import { ConfigError } from "../../core/config/problems.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";

const template = (path: string) => readFileSync(fileURLToPath(new URL(`../../templates/${path}`, import.meta.url)), "utf8");
const seeds = [
  template("modules/generic-mirror/conf/userconfig.xml"),
  template("modules/postgresql-mirror/conf/userconfig.xml"),
  template("modules/generic-farm/conf/userconfig.xml"),
  template("modules/nginx-farm/conf/userconfig.xml"),
];
const clusterSeed = template("cluster.xml");
/** A parse of any input must finish well within this. */
const parseBoundMs = 2_000;

function parseBoth(text: string): void {
  const startedMs = performance.now();
  try {
    const result = readUserconfig({ moduleName: "fuzz", file: "userconfig.xml", text, environment: {} });
    expect(Array.isArray(result.problems)).toBe(true);
    if (result.module === null) expect(result.problems.some((problem) => problem.severity === "error")).toBe(true);
    readClusterXml("cluster.xml", text, {});
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
  }
  expect(performance.now() - startedMs).toBeLessThan(parseBoundMs);
}

type Edit =
  | { readonly kind: "delete"; readonly at: number; readonly length: number }
  | { readonly kind: "duplicate"; readonly at: number; readonly length: number }
  | { readonly kind: "insert" | "replace"; readonly at: number; readonly text: string };

/** Edits of a valid file: delete, duplicate or replace a slice, insert markup fragments. */
const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant("duplicate" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 200 }) }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    text: fc.constantFrom("<", ">", "/>", "</service>", "<vip>", '="', "%", "%UNDEFINED%", "<![CDATA[", "]]>", "&amp;", "&#0;", "\u0000", "<!--", "-->", '<rule filter="on_ip"/>', 'pulse="-1"', 'timeout="99999999999999999999d"', "<check><http/></check>"),
  }),
  fc.record({ kind: fc.constant("replace" as const), at: fc.nat(), text: fc.string({ maxLength: 12 }) }),
);

function mutate(text: string, edits: readonly Edit[]): string {
  let result = text;
  for (const each of edits) {
    const at = result.length === 0 ? 0 : each.at % result.length;
    if (each.kind === "delete") result = result.slice(0, at) + result.slice(at + each.length);
    else if (each.kind === "duplicate") result = result.slice(0, at) + result.slice(at, at + each.length) + result.slice(at);
    else if (each.kind === "insert") result = result.slice(0, at) + each.text + result.slice(at);
    else result = result.slice(0, at) + each.text + result.slice(at + each.text.length);
  }
  return result;
}

describe("configuration parser fuzzing", () => {
  it("mutated valid module files give problems, never a crash", () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds, clusterSeed), fc.array(edit, { minLength: 1, maxLength: 8 }), (seed, edits) => parseBoth(mutate(seed, edits))),
      { numRuns: 400, seed: 4 },
    );
  });

  it("random text and bytes give problems, never a crash", () => {
    const text = fc.oneof(fc.string({ maxLength: 500 }), fc.string({ unit: "binary", maxLength: 500 }), fc.uint8Array({ maxLength: 500 }).map((bytes) => new TextDecoder().decode(bytes)));
    fc.assert(fc.property(text, parseBoth), { numRuns: 400, seed: 5 });
  });

  it("deeply nested input is refused quickly with a problem that says so", () => {
    const depth = 100_000;
    const text = `<safe>${"<a>".repeat(depth)}${"</a>".repeat(depth)}</safe>`;
    parseBoth(text);
    const result = readUserconfig({ moduleName: "deep", file: "userconfig.xml", text, environment: {} });
    expect(result.problems.map((problem) => problem.code)).toContain("CONFIG_TOO_DEEP");
  });

  it("huge input is refused quickly with a problem that says how much is read", () => {
    const text = `<safe><service mode="farm">${"<macro name='x' value='y'/>".repeat(200_000)}</service></safe>`;
    parseBoth(text);
    const result = readUserconfig({ moduleName: "huge", file: "userconfig.xml", text, environment: {} });
    expect(result.problems[0]?.code).toBe("CONFIG_TOO_LARGE");
  });

  it("many elements within the size limit are refused past the element limit", () => {
    const text = `<safe>${"<a/>".repeat(60_000)}</safe>`;
    parseBoth(text);
    expect(readUserconfig({ moduleName: "wide", file: "userconfig.xml", text, environment: {} }).problems[0]?.code).toBe("CONFIG_TOO_LARGE");
  });
});
