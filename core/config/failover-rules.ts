// The SafeKit `<failover>` rule language: parse, evaluate, and time the rules.
// A pure module: it performs no I/O, reads no clock, and does not execute actions.
//
// Grammar (whitespace and newlines are free; there are no comments, as in SafeKit):
//
//   rules      := (rule (";" rule)*)? ";"?      -- the last rule's ";" may be left out
//   rule       := LABEL ":" "if" "(" or ")" "then" ACTION "(" ")"
//   or         := and ("||" and)*
//   and        := unary ("&&" unary)*
//   unary      := "!" unary | "(" or ")" | comparison
//   comparison := RESOURCE ("==" | "!=") STATE
//   RESOURCE   := ("local." | "remote.")? CLASS "." IDENT      -- local when no prefix
//   STATE      := up | down | init | unknown
//   ACTION     := stop | stopstart | wait | restart | swap
//   LABEL      := letters, digits, "_" and "-"
//
// Decisions where SafeKit's guide is silent:
// - Wildcards are globs over each part of the name: `*` matches any run of characters
//   (none included), `?` exactly one. A bare `?` standing for a whole CLASS or IDENT means
//   "any" (`intf.?` matches `intf.eth0`), because that is how SafeKit's own default rules
//   use it; `intf.eth?` still means eth plus one character. CLASS and IDENT are matched
//   separately, so `*` never crosses the first dot (`*.x` is "IDENT x in any class").
//   IDENT may itself contain dots (`proc.appli.exe`).
// - A comparison with a wildcard holds when ANY matching resource satisfies it: for `==`
//   when some matching resource is in that state, for `!=` when some matching resource is
//   in another state. A comparison whose pattern matches no resource is false (so
//   `!(custom.x == up)` is true when custom.x does not exist).
// - `!` binds tighter than `&&`, which binds tighter than `||`; since a resource alone is
//   not a boolean, `! r == v` can only mean `!(r == v)`, and is read so.
// - States and actions are lowercase, exactly as SafeKit writes them; `true`/`false` and
//   other actions (`prim()`) are refused with the list of what is allowed.
// - Every rule needs a label, labels are unique, and an empty rule (`;;`) is an error.
//
// Limits (reported as problems, never thrown): the text is at most `ruleTextSizeMax` bytes,
// holds at most `ruleCountMax` rules, and parentheses and `!` nest at most
// `ruleExpressionDepthMax` deep (the parentheses of `if (...)` do not count). The parser
// reports every problem in one pass: after a syntax error it resumes at the next `;`.

import { assert } from "../assert.ts";
import type { ConfigProblem } from "./problems.ts";

export type FailoverAction = "stop" | "stopstart" | "wait" | "restart" | "swap";
export type ResourceState = "init" | "up" | "down" | "unknown";
export type ResourceScope = "local" | "remote";
export type ComparisonOperator = "==" | "!=";

export const failoverActions: readonly FailoverAction[] = ["stop", "stopstart", "wait", "restart", "swap"];
export const resourceStates: readonly ResourceState[] = ["up", "down", "init", "unknown"];

export type RuleExpr =
  | {
      readonly kind: "compare";
      readonly scope: ResourceScope;
      /** `CLASS.IDENT` as written, without the scope prefix; may hold `*` and `?`. */
      readonly resource: string;
      readonly operator: ComparisonOperator;
      readonly state: ResourceState;
    }
  | { readonly kind: "not"; readonly operand: RuleExpr }
  /** Two or more operands: `a && b && c` is one node. */
  | { readonly kind: "and"; readonly operands: readonly RuleExpr[] }
  | { readonly kind: "or"; readonly operands: readonly RuleExpr[] };

export interface FailoverRule {
  readonly label: string;
  readonly expr: RuleExpr;
  readonly action: FailoverAction;
  /** Where the label stands in the user's file. */
  readonly line: number;
  readonly column: number;
}

/** Where the rule text starts in the user's file: line 1, column 1 of the text maps here. */
export interface RuleTextOrigin {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export interface ParsedFailoverRules {
  /** The rules without problems, in text order; use them only when `problems` is empty. */
  readonly rules: readonly FailoverRule[];
  readonly problems: readonly ConfigProblem[];
}

/** 64 KiB of UTF-8: far more than any real rule set, small enough to parse at once. */
export const ruleTextSizeMax = 65_536;
export const ruleCountMax = 256;
export const ruleExpressionDepthMax = 32;
/** Offending token text kept in a problem's `value`. */
const problemValueLengthMax = 64;
const failoverPath = "safe/service/failover";

// ---------------------------------------------------------------------------------------
// Tokens

type TokenKind = "name" | "(" | ")" | ":" | ";" | "==" | "!=" | "!" | "&&" | "||" | "invalid" | "eof";

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  /** 0-based line and column inside the rule text. */
  readonly lineIndex: number;
  readonly columnIndex: number;
}

const nameCharacter = /[A-Za-z0-9_.\-*?]/;
const whitespace = new Set([" ", "\t", "\n", "\r", "\f", "\v"]);
const punctuation: readonly TokenKind[] = ["==", "!=", "&&", "||", "(", ")", ":", ";", "!"];

/** Splits the text into tokens; characters outside the language become `invalid` tokens. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let lineIndex = 0;
  let lineStart = 0;
  let index = 0;
  while (index < text.length) {
    const character = text[index]!;
    if (whitespace.has(character)) {
      index++;
      if (character === "\n") {
        lineIndex++;
        lineStart = index;
      }
      continue;
    }
    const length = tokenLength(text, index);
    const slice = text.slice(index, index + length.count);
    tokens.push({ kind: length.kind, text: slice, lineIndex, columnIndex: index - lineStart });
    index += length.count;
  }
  const last = tokens.at(-1);
  const endColumn = last === undefined ? 0 : last.columnIndex + last.text.length;
  tokens.push({ kind: "eof", text: "", lineIndex: last?.lineIndex ?? 0, columnIndex: endColumn });
  assert(tokens.at(-1)!.kind === "eof", "tokenize: the token list ends with eof");
  return tokens;
}

function tokenLength(text: string, index: number): { readonly kind: TokenKind; readonly count: number } {
  for (const kind of punctuation) if (text.startsWith(kind, index)) return { kind, count: kind.length };
  let end = index;
  while (end < text.length && nameCharacter.test(text[end]!)) end++;
  if (end > index) return { kind: "name", count: end - index };
  if (text.startsWith("//", index)) return { kind: "invalid", count: 2 };
  const code = text.codePointAt(index)!;
  return { kind: "invalid", count: code > 0xffff ? 2 : 1 };
}

// ---------------------------------------------------------------------------------------
// Parser

/** Thrown inside the parser to abandon a rule after a syntax error; caught per rule. */
class RuleAbandoned {
  readonly brand = "RuleAbandoned";
}

interface ParserState {
  readonly tokens: readonly Token[];
  index: number;
  readonly origin: RuleTextOrigin;
  readonly problems: ConfigProblem[];
  /** Cleared by problems that leave the rule readable (bad state, action, label). */
  ruleValid: boolean;
}

/**
 * Parses the rule text of a `<failover>` element. Never throws on any text: every syntax
 * error, unknown name and exceeded limit is a located problem, and all of them are
 * reported in one pass.
 */
export function parseFailoverRules(text: string, origin: RuleTextOrigin): ParsedFailoverRules {
  assert(Number.isInteger(origin.line) && origin.line >= 1, "parseFailoverRules: origin.line is 1-based");
  assert(Number.isInteger(origin.column) && origin.column >= 1, "parseFailoverRules: origin.column is 1-based");
  const size = utf8Size(text);
  if (size > ruleTextSizeMax) {
    const problem = makeProblem(origin, 0, 0, "CONFIG_RULE_LIMIT", `the failover rules are ${size} bytes; at most ${ruleTextSizeMax} are read`);
    return { rules: [], problems: [problem] };
  }
  const state: ParserState = { tokens: tokenize(text), index: 0, origin, problems: [], ruleValid: true };
  const rules: FailoverRule[] = [];
  const labels = new Map<string, Token>();
  let ruleCount = 0;
  while (peek(state).kind !== "eof") {
    if (ruleCount === ruleCountMax) {
      report(state, peek(state), "CONFIG_RULE_LIMIT", `more than ${ruleCountMax} failover rules; merge rules with || or remove some`);
      break;
    }
    ruleCount++;
    const rule = parseRuleRecovering(state, labels);
    if (rule !== null) rules.push(rule);
  }
  assert(rules.length <= ruleCountMax, "parseFailoverRules: the rule count is bounded");
  return { rules, problems: state.problems };
}

/** One rule; after a syntax error, skips to just past the next `;`. */
function parseRuleRecovering(state: ParserState, labels: Map<string, Token>): FailoverRule | null {
  state.ruleValid = true;
  try {
    const rule = parseRule(state, labels);
    return state.ruleValid ? rule : null;
  } catch (error) {
    if (!(error instanceof RuleAbandoned)) throw error;
    while (peek(state).kind !== ";" && peek(state).kind !== "eof") state.index++;
    if (peek(state).kind === ";") state.index++;
    return null;
  }
}

function parseRule(state: ParserState, labels: Map<string, Token>): FailoverRule {
  const labelToken = parseLabel(state, labels);
  expectKeyword(state, "if", `after "${labelToken.text}:"`);
  expect(state, "(", `after if (rules read \`label: if (condition) then action();\`)`);
  const expr = parseOr(state, 0);
  expect(state, ")", "to close the condition of if");
  expectKeyword(state, "then", "after the condition");
  const action = parseAction(state);
  const end = peek(state);
  if (end.kind === ";") state.index++;
  else if (end.kind !== "eof") abandon(state, end, "CONFIG_RULE_SYNTAX", `expected ; after the action, found ${describe(end)}`);
  const position = toPosition(state.origin, labelToken.lineIndex, labelToken.columnIndex);
  return { label: labelToken.text, expr, action, line: position.line, column: position.column };
}

const labelPattern = /^[A-Za-z0-9_-]+$/;

function parseLabel(state: ParserState, labels: Map<string, Token>): Token {
  const token = next(state);
  if (token.kind === "name" && token.text === "if") {
    abandon(state, token, "CONFIG_RULE_SYNTAX", `expected a rule label before if: write \`name: if (condition) then action();\``);
  }
  if (token.kind !== "name") abandon(state, token, "CONFIG_RULE_SYNTAX", `expected a rule label (letters, digits, _ and -), found ${describe(token)}`);
  if (!labelPattern.test(token.text)) {
    report(state, token, "CONFIG_RULE_SYNTAX", `expected a rule label of letters, digits, _ and -, found ${describe(token)}`);
  }
  expect(state, ":", `after the rule label "${token.text}"`);
  const previous = labels.get(token.text);
  if (previous !== undefined) {
    const where = toPosition(state.origin, previous.lineIndex, previous.columnIndex);
    report(state, token, "CONFIG_RULE_DUPLICATE_LABEL", `the label "${token.text}" is already used by the rule at line ${where.line}; give each rule its own label`);
  } else {
    labels.set(token.text, token);
  }
  return token;
}

function parseAction(state: ParserState): FailoverAction {
  const token = next(state);
  if (token.kind !== "name") abandon(state, token, "CONFIG_RULE_SYNTAX", `expected an action (${failoverActions.join(", ")}) after then, found ${describe(token)}`);
  const action = failoverActions.find((each) => each === token.text);
  if (action === undefined) {
    report(state, token, "CONFIG_RULE_ACTION", `unknown action ${describe(token)}: expected one of ${failoverActions.join(", ")}`);
  }
  expect(state, "(", `after the action ${token.text} (write ${token.text}())`);
  expect(state, ")", `after ${token.text}( (actions take no argument)`);
  return action ?? "wait";
}

function parseOr(state: ParserState, depth: number): RuleExpr {
  const operands = [parseAnd(state, depth)];
  while (peek(state).kind === "||") {
    state.index++;
    operands.push(parseAnd(state, depth));
  }
  return operands.length === 1 ? operands[0]! : { kind: "or", operands };
}

function parseAnd(state: ParserState, depth: number): RuleExpr {
  const operands = [parseUnary(state, depth)];
  while (peek(state).kind === "&&") {
    state.index++;
    operands.push(parseUnary(state, depth));
  }
  return operands.length === 1 ? operands[0]! : { kind: "and", operands };
}

/** The recursion of the parser goes through here only, so `depth` bounds the stack. */
function parseUnary(state: ParserState, depth: number): RuleExpr {
  const token = peek(state);
  if (token.kind === "!" || token.kind === "(") {
    if (depth >= ruleExpressionDepthMax) {
      abandon(state, token, "CONFIG_RULE_LIMIT", `parentheses and ! nest more than ${ruleExpressionDepthMax} deep; simplify the condition`);
    }
    state.index++;
    if (token.kind === "!") return { kind: "not", operand: parseUnary(state, depth + 1) };
    const inner = parseOr(state, depth + 1);
    expect(state, ")", "to close (");
    return inner;
  }
  if (token.kind === "name") return parseComparison(state);
  abandon(state, token, "CONFIG_RULE_SYNTAX", `expected a comparison such as custom.checkfile == down, ( or !, found ${describe(token)}`);
}

function parseComparison(state: ParserState): RuleExpr {
  const resourceToken = next(state);
  const resource = parseResource(resourceToken.text);
  if (resource === null) {
    report(
      state,
      resourceToken,
      "CONFIG_RULE_RESOURCE",
      `expected a resource CLASS.IDENT such as custom.checkfile or intf.?, optionally after local. or remote., found ${describe(resourceToken)}`,
    );
  }
  const operatorToken = next(state);
  if (operatorToken.kind !== "==" && operatorToken.kind !== "!=") {
    abandon(state, operatorToken, "CONFIG_RULE_SYNTAX", `expected == or != after ${resourceToken.text}, found ${describe(operatorToken)}`);
  }
  const stateToken = next(state);
  const resourceState = resourceStates.find((each) => stateToken.kind === "name" && each === stateToken.text);
  if (resourceState === undefined) {
    if (stateToken.kind !== "name") abandon(state, stateToken, "CONFIG_RULE_SYNTAX", `expected a state (${resourceStates.join(", ")}) after ${operatorToken.text}, found ${describe(stateToken)}`);
    report(state, stateToken, "CONFIG_RULE_STATE", `unknown state ${describe(stateToken)}: expected one of ${resourceStates.join(", ")}`);
  }
  return {
    kind: "compare",
    scope: resource?.scope ?? "local",
    resource: resource?.name ?? resourceToken.text,
    operator: operatorToken.kind,
    state: resourceState ?? "unknown",
  };
}

const classPattern = /^[A-Za-z*?][A-Za-z0-9_*?]*$/;
const identSegmentPattern = /^[A-Za-z0-9_\-*?]+$/;

/** `local.custom.x` → { scope: local, name: custom.x }; null when not CLASS.IDENT. */
function parseResource(text: string): { readonly scope: ResourceScope; readonly name: string } | null {
  const segments = text.split(".");
  // `local` and `remote` are scopes, never classes: `remote.x` lacks a CLASS or an IDENT.
  const prefixed = segments[0] === "local" || segments[0] === "remote";
  const scope: ResourceScope = prefixed && segments[0] === "remote" ? "remote" : "local";
  const parts = prefixed ? segments.slice(1) : segments;
  if (parts.length < 2) return null;
  if (!classPattern.test(parts[0]!)) return null;
  if (!parts.slice(1).every((segment) => identSegmentPattern.test(segment))) return null;
  return { scope, name: parts.join(".") };
}

function peek(state: ParserState): Token {
  return state.tokens[Math.min(state.index, state.tokens.length - 1)]!;
}

/** The current token, and moves past it (never past eof). */
function next(state: ParserState): Token {
  const token = peek(state);
  if (token.kind !== "eof") state.index++;
  return token;
}

function expect(state: ParserState, kind: TokenKind, context: string): void {
  const token = next(state);
  if (token.kind !== kind) abandon(state, token, "CONFIG_RULE_SYNTAX", `expected ${kind} ${context}, found ${describe(token)}`);
}

function expectKeyword(state: ParserState, keyword: string, context: string): void {
  const token = next(state);
  if (token.kind !== "name" || token.text !== keyword) {
    abandon(state, token, "CONFIG_RULE_SYNTAX", `expected ${keyword} ${context}, found ${describe(token)}`);
  }
}

function describe(token: Token): string {
  if (token.kind === "eof") return "the end of the rules";
  if (token.kind === "invalid" && (token.text === "//" || token.text === "#")) return `"${token.text}" (SafeKit rules have no comments)`;
  if (token.kind === "invalid" && (token.text === "=" || token.text === "&" || token.text === "|")) return `"${token.text}" (write ${token.text}${token.text})`;
  return `"${truncate(token.text)}"`;
}

function report(state: ParserState, token: Token, code: string, message: string): void {
  state.ruleValid = false;
  const problem = makeProblem(state.origin, token.lineIndex, token.columnIndex, code, message);
  state.problems.push(token.kind === "eof" ? problem : { ...problem, value: truncate(token.text) });
}

function abandon(state: ParserState, token: Token, code: string, message: string): never {
  report(state, token, code, message);
  throw new RuleAbandoned();
}

function makeProblem(origin: RuleTextOrigin, lineIndex: number, columnIndex: number, code: string, message: string): ConfigProblem {
  const position = toPosition(origin, lineIndex, columnIndex);
  return { severity: "error", code, file: origin.file, line: position.line, column: position.column, path: failoverPath, message };
}

/** A 0-based position in the rule text to a 1-based one in the user's file. */
function toPosition(origin: RuleTextOrigin, lineIndex: number, columnIndex: number): { readonly line: number; readonly column: number } {
  return { line: origin.line + lineIndex, column: lineIndex === 0 ? origin.column + columnIndex : columnIndex + 1 };
}

function truncate(text: string): string {
  return text.length <= problemValueLengthMax ? text : `${text.slice(0, problemValueLengthMax)}…`;
}

function utf8Size(text: string): number {
  let size = 0;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x80) size += 1;
    else if (code < 0x800) size += 2;
    else if (code >= 0xd800 && code <= 0xdbff && index + 1 < text.length && (text.charCodeAt(index + 1) & 0xfc00) === 0xdc00) {
      size += 4;
      index++;
    } else size += 3;
  }
  return size;
}

// ---------------------------------------------------------------------------------------
// Printing (for logs, and to check that parsing inverts it)

/** The expression in rule syntax; parsing the result gives back the same tree. */
export function formatRuleExpr(expr: RuleExpr): string {
  switch (expr.kind) {
    case "compare":
      return `${expr.scope === "remote" ? "remote." : ""}${expr.resource} ${expr.operator} ${expr.state}`;
    case "not":
      return `!${expr.operand.kind === "compare" || expr.operand.kind === "not" ? formatRuleExpr(expr.operand) : `(${formatRuleExpr(expr.operand)})`}`;
    case "and":
    case "or":
      return expr.operands.map(formatOperand).join(expr.kind === "and" ? " && " : " || ");
  }
}

/** An operand of && or ||: a nested && or || keeps its parentheses, so parsing gives back the same tree. */
function formatOperand(operand: RuleExpr): string {
  return operand.kind === "and" || operand.kind === "or" ? `(${formatRuleExpr(operand)})` : formatRuleExpr(operand);
}

/** `label: if (condition) then action();` */
export function formatFailoverRule(rule: FailoverRule): string {
  return `${rule.label}: if (${formatRuleExpr(rule.expr)}) then ${rule.action}();`;
}

// ---------------------------------------------------------------------------------------
// Default rules

/** SafeKit's default rules, which apply unless `<failover extends="no">`. */
export const defaultFailoverRulesText = [
  "interface_failure: if (intf.? == down) then wait();",
  "ip_failure: if (ip.? == down) then stopstart();",
  "splitbrain_failure: if (splitbrain.uptodate == down) then wait();",
].join("\n");

export function defaultFailoverRules(): FailoverRule[] {
  const parsed = parseFailoverRules(defaultFailoverRulesText, { file: "<default failover rules>", line: 1, column: 1 });
  assert(parsed.problems.length === 0, "defaultFailoverRules: the default rules parse");
  assert(parsed.rules.length === 3, "defaultFailoverRules: three default rules");
  return [...parsed.rules];
}

// ---------------------------------------------------------------------------------------
// Evaluation

/** The state of every resource, named `CLASS.IDENT`, on this node and as last heard from the peer. */
export interface ResourceStates {
  readonly local: ReadonlyMap<string, ResourceState>;
  readonly remote: ReadonlyMap<string, ResourceState>;
}

/**
 * Whether `name` (`CLASS.IDENT`) matches `pattern` (`CLASS.IDENT` with `*` and `?`).
 * CLASS and IDENT are matched separately, each split at the name's first dot.
 */
export function matchesResource(pattern: string, name: string): boolean {
  const patternDot = pattern.indexOf(".");
  const nameDot = name.indexOf(".");
  if (patternDot < 0 || nameDot < 0) return false;
  return (
    globMatches(segmentPattern(pattern.slice(0, patternDot)), name.slice(0, nameDot)) &&
    globMatches(segmentPattern(pattern.slice(patternDot + 1)), name.slice(nameDot + 1))
  );
}

/** A bare `?` as a whole CLASS or IDENT means any (non-empty) name. */
function segmentPattern(part: string): string {
  return part === "?" ? "?*" : part;
}

/** Glob match in O(pattern × text) at worst, without backtracking blow-up. */
function globMatches(pattern: string, text: string): boolean {
  let patternIndex = 0;
  let textIndex = 0;
  let starIndex = -1;
  let starTextIndex = 0;
  while (textIndex < text.length) {
    const character = pattern[patternIndex];
    if (character === "?" || (character !== undefined && character !== "*" && character === text[textIndex])) {
      patternIndex++;
      textIndex++;
    } else if (character === "*") {
      starIndex = patternIndex++;
      starTextIndex = textIndex;
    } else if (starIndex >= 0) {
      patternIndex = starIndex + 1;
      textIndex = ++starTextIndex;
    } else {
      return false;
    }
  }
  while (pattern[patternIndex] === "*") patternIndex++;
  return patternIndex === pattern.length;
}

/** Whether the condition holds. A comparison matching no resource is false. */
export function evaluateRuleExpr(expr: RuleExpr, states: ResourceStates): boolean {
  switch (expr.kind) {
    case "compare":
      return evaluateComparison(expr, states);
    case "not":
      return !evaluateRuleExpr(expr.operand, states);
    case "and":
      return expr.operands.every((operand) => evaluateRuleExpr(operand, states));
    case "or":
      return expr.operands.some((operand) => evaluateRuleExpr(operand, states));
  }
}

function evaluateComparison(expr: Extract<RuleExpr, { kind: "compare" }>, states: ResourceStates): boolean {
  const resources = expr.scope === "remote" ? states.remote : states.local;
  const satisfies = (state: ResourceState): boolean => (expr.operator === "==" ? state === expr.state : state !== expr.state);
  if (!expr.resource.includes("*") && !expr.resource.includes("?")) {
    const state = resources.get(expr.resource);
    return state !== undefined && satisfies(state);
  }
  for (const [name, state] of resources) if (matchesResource(expr.resource, name) && satisfies(state)) return true;
  return false;
}

/** The rules whose condition holds now, in rule order. It does not execute their actions. */
export function evaluateRules(rules: readonly FailoverRule[], states: ResourceStates): FailoverRule[] {
  const holding = rules.filter((rule) => evaluateRuleExpr(rule.expr, states));
  assert(holding.length <= rules.length, "evaluateRules: a subset of the rules");
  return holding;
}

// ---------------------------------------------------------------------------------------
// handle_time: an action runs only once its condition has held continuously for that long.

/**
 * Since when each rule's condition has held, by label, after an evaluation at `nowMs`:
 * a rule that holds keeps its earlier time (or starts at `nowMs`); one that does not
 * is dropped, so a condition that flickers starts its wait again.
 */
export function trackRuleConditions(sinceMs: ReadonlyMap<string, number>, holding: readonly FailoverRule[], nowMs: number): Map<string, number> {
  assert(Number.isFinite(nowMs), "trackRuleConditions: nowMs is finite");
  const tracked = new Map<string, number>();
  for (const rule of holding) {
    const since = sinceMs.get(rule.label) ?? nowMs;
    assert(since <= nowMs, "trackRuleConditions: a condition cannot hold since the future");
    tracked.set(rule.label, since);
  }
  return tracked;
}

/**
 * The rules whose condition has held continuously for at least `handleTimeMs` at `nowMs`,
 * in rule order: the actions that may run now. `sinceMs` maps a label to the time its
 * condition became true (see `trackRuleConditions`); a label absent does not hold.
 */
export function dueRules(rules: readonly FailoverRule[], sinceMs: ReadonlyMap<string, number>, nowMs: number, handleTimeMs: number): FailoverRule[] {
  assert(Number.isFinite(nowMs), "dueRules: nowMs is finite");
  assert(Number.isFinite(handleTimeMs) && handleTimeMs >= 0, "dueRules: handleTimeMs is a duration");
  return rules.filter((rule) => {
    const since = sinceMs.get(rule.label);
    if (since === undefined) return false;
    assert(since <= nowMs, "dueRules: a condition cannot hold since the future");
    return nowMs - since >= handleTimeMs;
  });
}
