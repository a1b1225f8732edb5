// The core purity checker: it flags every forbidden import and name, ignores them inside
// comments, strings and regexes, and its command line fails with file:line when core is impure.

import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { findPurityProblems, maskSource, type PurityProblem, type PurityRule } from "../../scripts/check-core-purity.ts";

function check(source: string, fileName = "core/sample.ts"): PurityProblem[] {
  return findPurityProblems(fileName, source);
}

function rulesOf(source: string, fileName?: string): PurityRule[] {
  return check(source, fileName).map((problem) => problem.rule);
}

describe("imports that core must not have", () => {
  it.each([
    ['import { readFileSync } from "node:fs";'],
    ['import fs from "fs";'],
    ['import * as net from "net";'],
    ['import dgram from "dgram";'],
    ['import { spawn } from "child_process";'],
    ['import os from "os";'],
    ['import path from "path";'],
    ['import { randomBytes } from "crypto";'],
    ['import http from "http";'],
    ['import https from "node:https";'],
    ['import { Worker } from "worker_threads";'],
    ['import { setTimeout } from "timers/promises";'],
    ['import process from "process";'],
    ['import type { Stats } from "node:fs";'],
    ['import "node:fs";'],
    ['export { readFile } from "fs/promises";'],
    ["export * from 'node:os';"],
  ])("a Node builtin: %s", (source) => {
    expect(rulesOf(source)).toContain("node-builtin-import");
  });

  it.each([
    ['import pino from "pino";'],
    ['import fc from "fast-check";'],
    ['import { x } from "@scope/package/sub";'],
    ['import { x } from "#internal";'],
  ])("a package that is not on the allow-list: %s", (source) => {
    expect(rulesOf(source)).toEqual(["package-import"]);
  });

  it("the XML parser on the allow-list may be imported", () => {
    expect(rulesOf('import { XMLParser } from "fast-xml-parser";')).toEqual([]);
  });

  it.each([
    ['import { Runtime } from "../runtime/runtime.ts";'],
    ['import { SimNetwork } from "../drivers/sim/network.ts";'],
    ['import { x } from "../../elsewhere.ts";'],
    ['import { x } from "/etc/passwd";'],
    ['import { x } from "../core-extra/x.ts";'],
  ])("a relative import that leaves core/: %s", (source) => {
    expect(rulesOf(source)).toEqual(["import-leaves-core"]);
  });

  it("a relative import from a subfolder back up to core/ is allowed, one more level is not", () => {
    expect(rulesOf('import { assert } from "../assert.ts";', "core/mirror/resync.ts")).toEqual([]);
    expect(rulesOf('import { x } from "../../drivers/x.ts";', "core/mirror/resync.ts")).toEqual(["import-leaves-core"]);
  });

  it("dynamic import() is flagged whatever its argument", () => {
    expect(rulesOf('const m = await import("./hash.ts");')).toEqual(["dynamic-import"]);
    expect(rulesOf("const m = await import(name);")).toEqual(["dynamic-import"]);
  });

  it("a /// <reference> directive is flagged although it is a comment", () => {
    expect(rulesOf('/// <reference types="node" />\nexport const a = 1;')).toEqual(["reference-directive"]);
  });
});

describe("imports inside core/ are allowed", () => {
  it("the imports the core uses today", () => {
    const source = [
      'import { assert } from "./assert.ts";',
      'import type { NodeId } from "./types.ts";',
      'import { computeOwners, type OwnerMap } from "./ownership.ts";',
      'export { BucketSet } from "./bucket-set.ts";',
      "import {\n  a,\n  b,\n} from './multi-line.ts';",
    ].join("\n");
    expect(check(source)).toEqual([]);
  });
});

describe("names that core must not use", () => {
  it.each([
    ["Date", "const nowMs = Date.now();"],
    ["Date", "const d = new Date(0);"],
    ["Date", "let d: Date;"],
    ["Math.random", "const r = Math.random();"],
    ["Math.random", "const r = Math . random();"],
    ["setTimeout", "setTimeout(() => {}, 10);"],
    ["setInterval", "const h = setInterval(tick, 10);"],
    ["setImmediate", "setImmediate(run);"],
    ["queueMicrotask", "queueMicrotask(run);"],
    ["process", "const env = process.env.HOME;"],
    ["process", "const copy = { ...process };"],
    ["process", "const p = cond ? process : other;"],
    ["performance", "const t = performance.now();"],
    ["globalThis", "const g = globalThis;"],
    ["require(", 'const fs = require("fs");'],
    ["fetch(", 'await fetch("http://example.com");'],
    ["console.", 'console.log("x");'],
    ["console.", "console .error(error);"],
    ["import.meta", "const url = import.meta.url;"],
  ])("%s in: %s", (match, source) => {
    const problems = check(source);
    expect(problems.map((problem) => problem.match)).toContain(match);
    expect(problems.every((problem) => problem.rule !== "forbidden-global" || problem.message.length > 0)).toBe(true);
  });

  it("a use inside a template substitution is code, not text", () => {
    expect(check("const s = `at ${Date.now()} ms`;").map((problem) => problem.match)).toEqual(["Date"]);
    expect(check("const s = `a ${ { k: `b ${process.pid}` }.k } c`;").map((problem) => problem.match)).toEqual(["process"]);
  });

  it("reports line and column of each use, and the line's text", () => {
    const problems = check('// header\nconst a = 1;\n  const b = Date.now(); console.log("b");\n');
    expect(problems.map(({ line, column, match, lineText }) => ({ line, column, match, lineText }))).toEqual([
      { line: 3, column: 13, match: "Date", lineText: 'const b = Date.now(); console.log("b");' },
      { line: 3, column: 25, match: "console.", lineText: 'const b = Date.now(); console.log("b");' },
    ]);
  });
});

describe("what is not a use", () => {
  it.each([
    ["a line comment", "// Date.now(), Math.random(), process.env, setTimeout, console.log\nexport const a = 1;"],
    ["a block comment", '/* import fs from "node:fs"; Date globalThis fetch("x") */ export const a = 1;'],
    ["a TSDoc comment", "/**\n * Never call setTimeout or Date.now here: time is an input (nowMs).\n */\nexport const a = 1;"],
    ["a double-quoted string", 'const s = "Date.now() process.env require(\\"fs\\")";'],
    ["a single-quoted string", "const s = 'console.log(performance)';"],
    ["a template literal's text", "const s = `setTimeout ${1 + 1} queueMicrotask`;"],
    ["a regex literal", 'const r = /Date|process|"/g;'],
    ["a regex containing a quote, followed by a string", "const r = /'/; const s = 'Date';"],
    ["a regex with a slash in a class, followed by a string", "const r = /[/\"]+/; const s = \"process\";"],
    ["a member of another object", "const p = state.process; const d = input.Date; const c = self?.console;"],
    ["an object key", "const o = { process: 1, Date: 2 };"],
    ["an interface member", "interface Ports {\n  readonly process: ProcessPort;\n  performance?: number;\n}"],
    ["a parameter", "function run(input: number, process: ProcessPort) {}"],
    ["a longer name", "const updateDate = 1; const processed = 2; const myConsole = 3; const setTimeoutMs = 4;"],
    ["a string that looks like an import", 'const s = "import fs from \'node:fs\'";'],
  ])("%s", (_, source) => {
    expect(check(source)).toEqual([]);
  });

  it("a string that is not in an import position is not classified as a specifier", () => {
    expect(check('const name = "node:fs"; const pkg = "pino";')).toEqual([]);
  });

  it("code after a regex literal is still checked", () => {
    expect(check("const r = /[/'\"]+/; const t = Date.now();").map((problem) => problem.match)).toEqual(["Date"]);
  });

  it("division is not mistaken for a regex that hides code", () => {
    expect(check("const a = b / c; const t = Date.now(); const d = e / f;").map((problem) => problem.match)).toEqual(["Date"]);
  });
});

describe("maskSource", () => {
  it("keeps length and line breaks, so offsets map to the original lines", () => {
    const source = '/* a\n b */ const s = "x\\"y"; // c\nconst t = `1\n${2}`;\n';
    const { code } = maskSource(source);
    expect(code).toHaveLength(source.length);
    expect(code.split("\n")).toHaveLength(source.split("\n").length);
    expect(code).not.toContain("a");
    expect(code).toContain("const s");
    expect(code).toContain("${2}");
  });
});

// ---------------------------------------------------------------------------------------
// The command line, on a throwaway copy of the repository layout.

const scriptPath = path.resolve(import.meta.dirname, "../../scripts/check-core-purity.ts");
const temporaryDirs: string[] = [];

afterEach(() => {
  for (const dir of temporaryDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function runChecker(coreFiles: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const root = mkdtempSync(path.join(tmpdir(), "core-purity-"));
  temporaryDirs.push(root);
  mkdirSync(path.join(root, "scripts"));
  cpSync(scriptPath, path.join(root, "scripts", "check-core-purity.ts"));
  for (const [name, text] of Object.entries(coreFiles)) {
    mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    writeFileSync(path.join(root, name), text);
  }
  // process.execPath is the Node 24 that runs vitest, so type stripping works.
  const result = spawnSync(process.execPath, [path.join(root, "scripts", "check-core-purity.ts")], { encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("the check:core command line", () => {
  it("passes a pure core and prints one summary line", () => {
    const result = runChecker({
      "core/a.ts": 'import { b } from "./sub/b.ts";\nexport const a = b;\n',
      "core/sub/b.ts": "// Date.now() is not used here\nexport const b = 1;\n",
    });
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("core purity: 2 files, 0 problems\n");
    expect(result.status).toBe(0);
  });

  it("fails an impure core with file:line, the offending text and why core must be pure", () => {
    const result = runChecker({
      "core/a.ts": "export const a = 1;\n",
      "core/sub/clock.ts": "export const a = 1;\nexport const nowMs = () => Date.now();\n",
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("core/sub/clock.ts:2:");
    expect(result.stderr).toContain("export const nowMs = () => Date.now();");
    expect(result.stderr).toContain("core/ must be pure");
    expect(result.stdout).toBe("");
  });

  it("does not scan test files under core/", () => {
    const result = runChecker({
      "core/a.ts": "export const a = 1;\n",
      "core/a.test.ts": 'import fs from "node:fs";\n',
    });
    expect(result.stdout).toBe("core purity: 1 files, 0 problems\n");
    expect(result.status).toBe(0);
  });

  it("fails when it finds no core source, rather than passing vacuously", () => {
    const result = runChecker({ "core/README.md": "nothing" });
    expect(result.status).toBe(1);
  });
});
