// Checks that core/ stays a pure function of its inputs (DESIGN.md, "core/ — a pure
// function of its inputs"): no I/O, no clock, no randomness, no timers, no Node or package
// imports, no imports that leave core/. Run by `npm run check:core`; part of `npm test`.
//
// It is a lexical check, not a type checker: a small tokenizer blanks comments, string
// literals and regular-expression literals (keeping line breaks, so offsets still map to
// lines), then the remaining code is searched for forbidden names and every string literal
// in an import position is classified. What it cannot see (aliases such as
// `const g = globalThis`, names built at run time) is caught by the first forbidden name
// it contains; it does not follow values through code.
//
// This script is not core: it may use Node builtins, and only those.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { isBuiltin } from "node:module";
import path from "node:path";

/**
 * Packages core/ may import. Empty on purpose: core depends on nothing but itself. A
 * package belongs here only if it is itself pure (no I/O, no clock, no global state) and
 * deterministic across platforms; add its name with a comment saying why.
 */
export const allowedCorePackages: readonly string[] = [
  // The XML parser of userconfig.xml and cluster.xml: string in, objects out, no I/O, no
  // clock, no global state (the issue asks for it; parsing is computation in the core).
  "fast-xml-parser",
];

export type PurityRule =
  | "node-builtin-import"
  | "package-import"
  | "import-leaves-core"
  | "dynamic-import"
  | "reference-directive"
  | "forbidden-global";

export interface PurityProblem {
  /** The file as given to findPurityProblems, e.g. `core/farm.ts`. */
  readonly file: string;
  /** 1-based line and column of the offending text. */
  readonly line: number;
  readonly column: number;
  readonly rule: PurityRule;
  /** The offending text itself, e.g. `Date` or `"node:fs"`. */
  readonly match: string;
  /** Why it is forbidden and what to do instead. */
  readonly message: string;
  /** The whole source line, trimmed, for the report. */
  readonly lineText: string;
}

interface ForbiddenName {
  readonly pattern: RegExp;
  readonly message: string;
}

const clockMessage = "reads the clock; time arrives as an input (nowMs)";
const timerMessage = "schedules work on the event loop; arm timers through an effect";

/** Names core must not use. Each pattern is matched against code with comments and strings blanked. */
const forbiddenNames: readonly ForbiddenName[] = [
  { pattern: /\bDate\b/g, message: clockMessage },
  { pattern: /\bperformance\b/g, message: clockMessage },
  { pattern: /\bMath\s*\.\s*random\b/g, message: "is unseeded randomness; take a seeded generator as an input" },
  { pattern: /\bsetTimeout\b/g, message: timerMessage },
  { pattern: /\bsetInterval\b/g, message: timerMessage },
  { pattern: /\bsetImmediate\b/g, message: timerMessage },
  { pattern: /\bqueueMicrotask\b/g, message: timerMessage },
  { pattern: /\bprocess\b/g, message: "is the host process (environment, exit, I/O); pass what is needed as an input" },
  { pattern: /\bglobalThis\b/g, message: "reaches host globals; pass what is needed as an input" },
  { pattern: /\brequire\s*\(/g, message: "loads a module at run time; core imports core modules statically" },
  { pattern: /\bfetch\s*\(/g, message: "performs network I/O; request it through an effect" },
  { pattern: /\bconsole\s*\./g, message: "writes output; log through a log effect" },
  { pattern: /\bimport\s*\.\s*meta\b/g, message: "depends on where the module is loaded from" },
];

// ---------------------------------------------------------------------------------------
// Tokenizer

interface StringLiteral {
  /** Offset of the opening quote. */
  readonly start: number;
  /** The raw text between the quotes (escapes are not decoded). */
  readonly value: string;
}

interface MaskedSource {
  /** The source with comments and literal contents replaced by spaces; same length and line breaks. */
  readonly code: string;
  /** Quoted strings and templates without substitutions, in source order. */
  readonly strings: readonly StringLiteral[];
}

/** Keywords after which a `/` starts a regular expression rather than a division. */
const keywordsBeforeRegex = new Set(["return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else", "yield", "await"]);

/** Blanks comments and the contents of string, template and regex literals. */
export function maskSource(text: string): MaskedSource {
  const out = text.split("");
  const strings: StringLiteral[] = [];
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n" && out[k] !== "\r") out[k] = " ";
  };
  // For each template substitution `${` still open, the brace depth at which it closes.
  const templateDepths: number[] = [];
  let braceDepth = 0;
  let previous = ""; // the last significant code token (a punctuator character or a word)
  let index = 0;
  // Scans template text from `from` to its closing backtick or the next `${`.
  const scanTemplate = (from: number, opening: number): number => {
    let k = from;
    while (k < text.length && text[k] !== "`" && !(text[k] === "$" && text[k + 1] === "{")) k += text[k] === "\\" ? 2 : 1;
    k = Math.min(k, text.length);
    blank(from, k);
    if (text[k] === "`") {
      if (opening >= 0) strings.push({ start: opening, value: text.slice(opening + 1, k) });
      return k + 1;
    }
    if (k < text.length) {
      templateDepths.push(braceDepth);
      braceDepth++;
      return k + 2;
    }
    return k;
  };
  while (index < text.length) {
    const char = text[index]!;
    const next = text[index + 1];
    if (char === "/" && next === "/") {
      const end = text.indexOf("\n", index);
      const stop = end === -1 ? text.length : end;
      blank(index, stop);
      index = stop;
    } else if (char === "/" && next === "*") {
      const end = text.indexOf("*/", index + 2);
      const stop = end === -1 ? text.length : end + 2;
      blank(index, stop);
      index = stop;
    } else if (char === '"' || char === "'") {
      const stop = scanQuoted(text, index);
      strings.push({ start: index, value: text.slice(index + 1, Math.max(index + 1, stop - 1)) });
      blank(index + 1, stop - 1);
      index = stop;
      previous = "literal";
    } else if (char === "`") {
      index = scanTemplate(index + 1, index);
      previous = "literal";
    } else if (char === "}" && templateDepths.length > 0 && templateDepths.at(-1) === braceDepth - 1) {
      templateDepths.pop();
      braceDepth--;
      index = scanTemplate(index + 1, -1);
      previous = "literal";
    } else if (char === "/" && regexMayStartAfter(previous)) {
      const stop = scanRegex(text, index);
      if (stop === -1) {
        previous = "/";
        index++;
      } else {
        blank(index + 1, stop);
        index = stop;
        previous = "literal";
      }
    } else if (/[A-Za-z0-9_$]/.test(char)) {
      let stop = index;
      while (stop < text.length && /[A-Za-z0-9_$]/.test(text[stop]!)) stop++;
      previous = text.slice(index, stop);
      index = stop;
    } else {
      if (char === "{") braceDepth++;
      if (char === "}") braceDepth--;
      if (!/\s/.test(char)) previous = char;
      index++;
    }
  }
  return { code: out.join(""), strings };
}

/** The offset just past the closing quote of the string starting at `start` (or its line's end if unterminated). */
function scanQuoted(text: string, start: number): number {
  const quote = text[start];
  let k = start + 1;
  while (k < text.length && text[k] !== quote && text[k] !== "\n") k += text[k] === "\\" ? 2 : 1;
  return Math.min(k + 1, text.length);
}

function regexMayStartAfter(previous: string): boolean {
  if (previous === "") return true;
  if (/^[A-Za-z0-9_$]/.test(previous)) return keywordsBeforeRegex.has(previous);
  return previous !== ")" && previous !== "]" && previous !== "literal";
}

/** The offset past the flags of the regex starting at `start`, or -1 when no regex closes on this line. */
function scanRegex(text: string, start: number): number {
  let k = start + 1;
  let inClass = false;
  while (k < text.length && text[k] !== "\n") {
    const char = text[k]!;
    if (char === "/" && !inClass) {
      k++;
      while (k < text.length && /[a-z]/.test(text[k]!)) k++;
      return k;
    }
    if (char === "[") inClass = true;
    if (char === "]") inClass = false;
    k += char === "\\" ? 2 : 1;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------
// The check

/**
 * Lists what makes one core source file impure. A pure function: `fileName` is the path
 * relative to the repository root (e.g. `core/farm.ts`), used to resolve relative imports
 * and to name the file in problems; `sourceText` is the file's content.
 */
export function findPurityProblems(fileName: string, sourceText: string): PurityProblem[] {
  const file = fileName.split(path.sep).join("/");
  const { code, strings } = maskSource(sourceText);
  const lines = sourceText.split("\n");
  const lineStarts = [0];
  for (let k = 0; k < sourceText.length; k++) if (sourceText[k] === "\n") lineStarts.push(k + 1);
  const problems: PurityProblem[] = [];
  const report = (offset: number, rule: PurityRule, match: string, message: string) => {
    let line = 0;
    while (line + 1 < lineStarts.length && lineStarts[line + 1]! <= offset) line++;
    const lineText = (lines[line] ?? "").trim();
    problems.push({ file, line: line + 1, column: offset - lineStarts[line]! + 1, rule, match, message, lineText });
  };

  for (const { pattern, message } of forbiddenNames) {
    for (const found of code.matchAll(pattern)) {
      if (isPropertyName(code, found.index, found[0])) continue;
      report(found.index, "forbidden-global", found[0].replace(/\s+/g, ""), `${found[0].replace(/\s+/g, "")} ${message}`);
    }
  }
  for (const found of code.matchAll(/\bimport\s*\(/g)) {
    report(found.index, "dynamic-import", "import(", "import() loads code at run time; core imports core modules statically");
  }
  for (const found of sourceText.matchAll(/^[ \t]*\/\/\/[ \t]*<reference\b[^\n]*/gm)) {
    report(found.index, "reference-directive", found[0].trim(), "a /// <reference> directive pulls in declarations from outside core/");
  }
  for (const literal of strings) {
    if (!isImportSpecifier(code, literal.start)) continue;
    const verdict = classifySpecifier(file, literal.value);
    if (verdict !== null) report(literal.start, verdict.rule, JSON.stringify(literal.value), verdict.message);
  }
  return problems.sort((a, b) => a.line - b.line || a.column - b.column);
}

/**
 * True when the name at `offset` is a property of something else (`state.process`,
 * `{ process: x }`, `readonly Date?: T`) or a parameter declaration, not the host global.
 * Spread (`...process`) is a use of the global.
 */
function isPropertyName(code: string, offset: number, matched: string): boolean {
  let before = offset - 1;
  while (before >= 0 && /\s/.test(code[before]!)) before--;
  if (code[before] === "." && code[before - 1] !== ".") return true;
  const word = /^[A-Za-z_$][\w$]*/.exec(matched)?.[0] ?? "";
  if (word !== matched) return false; // `require(`, `Math.random`: calls, never keys
  const after = code.slice(offset + word.length).match(/^\s*(\??)\s*:/);
  if (after === null) return false;
  const head = code.slice(0, before + 1);
  return /(?:[{,;(]|\breadonly)$/.test(head.trimEnd()) || before < 0;
}

/** True when the string literal at `start` is the specifier of an import or export declaration. */
function isImportSpecifier(code: string, start: number): boolean {
  const head = code.slice(Math.max(0, start - 200), start).trimEnd();
  return /(?:^|[^\w$.])(?:from|import)$/.test(head);
}

function classifySpecifier(file: string, specifier: string): { rule: PurityRule; message: string } | null {
  if (specifier.startsWith("node:") || isBuiltin(specifier)) {
    return { rule: "node-builtin-import", message: `imports the Node builtin ${specifier}; core performs no I/O: put it behind a port in drivers/` };
  }
  if (specifier.startsWith(".") || specifier.startsWith("/")) {
    const segments = file.split("/");
    const coreIndex = segments.indexOf("core");
    const coreRoot = coreIndex >= 0 ? segments.slice(0, coreIndex + 1).join("/") : path.posix.dirname(file);
    const resolved = specifier.startsWith("/") ? specifier : path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
    if (resolved === coreRoot || resolved.startsWith(`${coreRoot}/`)) return null;
    return { rule: "import-leaves-core", message: `imports ${specifier}, outside core/; core depends only on core (drivers depend on core, not the reverse)` };
  }
  const packageName = specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!;
  if (allowedCorePackages.includes(packageName)) return null;
  return { rule: "package-import", message: `imports the package ${specifier}; core imports only the packages allowed in scripts/check-core-purity.ts` };
}

/** One problem as the CLI prints it: `file:line:column: message` and the offending line. */
export function formatProblem(problem: PurityProblem): string {
  return `${problem.file}:${problem.line}:${problem.column}: ${problem.match} — ${problem.message}\n    ${problem.lineText}`;
}

// ---------------------------------------------------------------------------------------
// Command line

/** Every .ts source under `coreDir`, test files excluded, as sorted paths relative to `rootDir`. */
export function listCoreSources(rootDir: string, coreDir: string): string[] {
  const entries = readdirSync(coreDir, { recursive: true, encoding: "utf8" });
  return entries
    .map((entry) => path.join(coreDir, entry))
    .filter((full) => /\.[cm]?ts$/.test(full) && !/\.(test|spec)\.[cm]?ts$/.test(full))
    .filter((full) => !full.split(path.sep).includes("__tests__") && statSync(full).isFile())
    .map((full) => path.relative(rootDir, full).split(path.sep).join("/"))
    .sort();
}

function main(): number {
  const rootDir = path.resolve(import.meta.dirname, "..");
  const coreDir = path.join(rootDir, "core");
  const files = listCoreSources(rootDir, coreDir);
  if (files.length === 0) {
    console.error(`core purity: no .ts file found under ${coreDir}; is the script in the repository's scripts/ folder?`);
    return 1;
  }
  const problems = files.flatMap((file) => findPurityProblems(file, readFileSync(path.join(rootDir, file), "utf8")));
  if (problems.length === 0) {
    console.log(`core purity: ${files.length} files, 0 problems`);
    return 0;
  }
  for (const problem of problems) console.error(formatProblem(problem));
  const fileCount = new Set(problems.map((problem) => problem.file)).size;
  console.error(
    `core purity: ${files.length} files, ${problems.length} problems in ${fileCount} files.\n` +
      "core/ must be pure: no I/O, clock, randomness, timers, host globals, Node or package imports, " +
      "and no imports from outside core/. Take time, randomness and I/O as inputs and request side " +
      'effects as effects (DESIGN.md, "core/ — a pure function of its inputs").',
  );
  return 1;
}

if (import.meta.main) process.exitCode = main();
