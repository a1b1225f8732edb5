// The <failover> rule language: valid texts parse to the expected tree; each invalid text
// gives exactly the expected problem, located in the user's file; every problem is found
// in one pass; evaluation follows the documented wildcard, scope and missing-resource
// rules; handle_time delays an action; no input makes the parser throw or take long.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  defaultFailoverRules,
  dueRules,
  evaluateRuleExpr,
  evaluateRules,
  failoverActions,
  formatFailoverRule,
  formatRuleExpr,
  matchesResource,
  parseFailoverRules,
  resourceStates,
  ruleCountMax,
  ruleExpressionDepthMax,
  ruleTextSizeMax,
  trackRuleConditions,
  type FailoverRule,
  type ResourceState,
  type ResourceStates,
  type RuleExpr,
  type RuleTextOrigin,
} from "../../core/config/failover-rules.ts";

const origin: RuleTextOrigin = { file: "userconfig.xml", line: 40, column: 17 };

function parse(text: string): ReturnType<typeof parseFailoverRules> {
  return parseFailoverRules(text, origin);
}

function compare(resource: string, operator: "==" | "!=", state: ResourceState, scope: "local" | "remote" = "local"): RuleExpr {
  return { kind: "compare", scope, resource, operator, state };
}

function states(local: Record<string, ResourceState>, remote: Record<string, ResourceState> = {}): ResourceStates {
  return { local: new Map(Object.entries(local)), remote: new Map(Object.entries(remote)) };
}

describe("parseFailoverRules: valid rules", () => {
  const cases: readonly { readonly name: string; readonly text: string; readonly expr: RuleExpr; readonly action: string }[] = [
    { name: "a simple comparison", text: "a: if (custom.checkfile == down) then restart();", expr: compare("custom.checkfile", "==", "down"), action: "restart" },
    { name: "!= and the init state", text: "a: if (custom.x != init) then stop();", expr: compare("custom.x", "!=", "init"), action: "stop" },
    { name: "a remote. prefix", text: "a: if (remote.heartbeat.* == down) then swap();", expr: compare("heartbeat.*", "==", "down", "remote"), action: "swap" },
    { name: "a local. prefix is the default scope", text: "a: if (local.intf.? == down) then wait();", expr: compare("intf.?", "==", "down"), action: "wait" },
    { name: "an IDENT with dots", text: "a: if (proc.appli.exe == down) then stopstart();", expr: compare("proc.appli.exe", "==", "down"), action: "stopstart" },
    { name: "the unknown state", text: "a: if (remote.custom.x == unknown) then wait();", expr: compare("custom.x", "==", "unknown", "remote"), action: "wait" },
    {
      name: "&& binds tighter than ||",
      text: "a: if (x.a == up || x.b == up && x.c == up) then wait();",
      expr: { kind: "or", operands: [compare("x.a", "==", "up"), { kind: "and", operands: [compare("x.b", "==", "up"), compare("x.c", "==", "up")] }] },
      action: "wait",
    },
    {
      name: "a chain of && is one node",
      text: "a: if (x.a == up && x.b == up && x.c == up) then wait();",
      expr: { kind: "and", operands: [compare("x.a", "==", "up"), compare("x.b", "==", "up"), compare("x.c", "==", "up")] },
      action: "wait",
    },
    {
      name: "parentheses override precedence",
      text: "a: if ((x.a == up || x.b == up) && x.c == up) then wait();",
      expr: { kind: "and", operands: [{ kind: "or", operands: [compare("x.a", "==", "up"), compare("x.b", "==", "up")] }, compare("x.c", "==", "up")] },
      action: "wait",
    },
    { name: "! before a comparison negates the comparison", text: "a: if (!x.a == up) then wait();", expr: { kind: "not", operand: compare("x.a", "==", "up") }, action: "wait" },
    {
      name: "! binds tighter than &&",
      text: "a: if (!x.a == up && x.b == up) then wait();",
      expr: { kind: "and", operands: [{ kind: "not", operand: compare("x.a", "==", "up") }, compare("x.b", "==", "up")] },
      action: "wait",
    },
    { name: "double negation", text: "a: if (!!(x.a == up)) then wait();", expr: { kind: "not", operand: { kind: "not", operand: compare("x.a", "==", "up") } }, action: "wait" },
    { name: "no whitespace at all", text: "a:if(x.a==up)then wait();", expr: compare("x.a", "==", "up"), action: "wait" },
    { name: "the last ; may be left out", text: "a: if (x.a == up) then wait()", expr: compare("x.a", "==", "up"), action: "wait" },
    { name: "free newlines and tabs", text: "\n\ta\n:\nif\n(\n x.a\n==\nup\n)\nthen\nwait\n(\n)\n;\n", expr: compare("x.a", "==", "up"), action: "wait" },
    { name: "a label with - and digits", text: "ip-failure_2: if (ip.? == down) then stopstart();", expr: compare("ip.?", "==", "down"), action: "stopstart" },
  ];
  for (const each of cases) {
    it(`reads ${each.name}`, () => {
      const parsed = parse(each.text);
      expect(parsed.problems).toEqual([]);
      expect(parsed.rules).toHaveLength(1);
      expect(parsed.rules[0]!.expr).toEqual(each.expr);
      expect(parsed.rules[0]!.action).toBe(each.action);
    });
  }

  it("reads several rules in order, each located at its label in the user's file", () => {
    const text = "first: if (custom.a == down) then restart();\n  second: if (custom.b == down) then stopstart();\n\nthird: if (custom.c == down) then wait();";
    const parsed = parse(text);
    expect(parsed.problems).toEqual([]);
    expect(parsed.rules.map((rule) => [rule.label, rule.action, rule.line, rule.column])).toEqual([
      ["first", "restart", 40, 17],
      ["second", "stopstart", 41, 3],
      ["third", "wait", 43, 1],
    ]);
  });

  it("reads an empty or blank text as no rules", () => {
    expect(parse("")).toEqual({ rules: [], problems: [] });
    expect(parse(" \n\t\r\n ")).toEqual({ rules: [], problems: [] });
  });

  it("reads every action", () => {
    for (const action of failoverActions) {
      expect(parse(`a: if (x.y == down) then ${action}();`).rules[0]!.action).toBe(action);
    }
  });
});

describe("parseFailoverRules: invalid rules", () => {
  // Each text has exactly one problem; line and column are in the user's file, where the
  // text starts at line 40, column 17.
  const cases: readonly { readonly name: string; readonly text: string; readonly code: string; readonly line: number; readonly column: number; readonly message: string }[] = [
    { name: "an unknown action", text: "a: if (x.y == down) then prim();", code: "CONFIG_RULE_ACTION", line: 40, column: 42, message: "expected one of stop, stopstart, wait, restart, swap" },
    { name: "an unknown state", text: "a: if (x.y == true) then wait();", code: "CONFIG_RULE_STATE", line: 40, column: 31, message: "expected one of up, down, init, unknown" },
    { name: "an uppercase state", text: "a: if (x.y == DOWN) then wait();", code: "CONFIG_RULE_STATE", line: 40, column: 31, message: "unknown state" },
    { name: "a resource without a class", text: "a: if (checkfile == down) then wait();", code: "CONFIG_RULE_RESOURCE", line: 40, column: 24, message: "expected a resource CLASS.IDENT" },
    { name: "a scope with no resource", text: "a: if (remote.x == down) then wait();", code: "CONFIG_RULE_RESOURCE", line: 40, column: 24, message: "CLASS.IDENT" },
    { name: "an empty IDENT segment", text: "a: if (proc..exe == down) then wait();", code: "CONFIG_RULE_RESOURCE", line: 40, column: 24, message: "CLASS.IDENT" },
    { name: "a missing label", text: "if (x.y == down) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 17, message: "expected a rule label before if" },
    { name: "a label with a dot", text: "a.b: if (x.y == down) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 17, message: "letters, digits, _ and -" },
    { name: "a missing colon", text: "a if (x.y == down) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 19, message: 'expected : after the rule label "a", found "if"' },
    { name: "if without parentheses", text: "a: if x.y == down then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 23, message: "expected ( after if" },
    { name: "a missing then", text: "a: if (x.y == down) wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 37, message: 'expected then after the condition, found "wait"' },
    { name: "an action without ()", text: "a: if (x.y == down) then wait;", code: "CONFIG_RULE_SYNTAX", line: 40, column: 46, message: "expected ( after the action wait" },
    { name: "an action with an argument", text: "a: if (x.y == down) then wait(1);", code: "CONFIG_RULE_SYNTAX", line: 40, column: 47, message: "actions take no argument" },
    { name: "a single =", text: "a: if (x.y = down) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 28, message: 'found "=" (write ==)' },
    { name: "a single &", text: "a: if (x.y == down & x.z == up) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 36, message: 'found "&" (write &&)' },
    { name: "a missing comparison", text: "a: if (x.y) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 27, message: 'expected == or != after x.y, found ")"' },
    { name: "an empty condition", text: "a: if () then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 24, message: "expected a comparison" },
    { name: "an unclosed parenthesis", text: "a: if ((x.y == down) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 38, message: 'expected ) to close the condition of if, found "then"' },
    { name: "a // comment", text: "// the rules\na: if (x.y == down) then wait();", code: "CONFIG_RULE_SYNTAX", line: 40, column: 17, message: "SafeKit rules have no comments" },
    { name: "a # comment on a later line", text: "a: if (x.y == down) then wait();\n  # note\n", code: "CONFIG_RULE_SYNTAX", line: 41, column: 3, message: "SafeKit rules have no comments" },
    { name: "an empty rule", text: "a: if (x.y == down) then wait();;", code: "CONFIG_RULE_SYNTAX", line: 40, column: 49, message: 'expected a rule label (letters, digits, _ and -), found ";"' },
    { name: "a truncated rule", text: "a: if (x.y ==", code: "CONFIG_RULE_SYNTAX", line: 40, column: 30, message: "found the end of the rules" },
    { name: "two rules without ;", text: "a: if (x.y == down) then wait()\nb: if (x.z == down) then wait();", code: "CONFIG_RULE_SYNTAX", line: 41, column: 1, message: 'expected ; after the action, found "b"' },
    { name: "a non-ASCII character", text: "a: if (x.y == down) then wait(); é", code: "CONFIG_RULE_SYNTAX", line: 40, column: 50, message: '"é"' },
    {
      name: "a duplicate label, located at the second one",
      text: "a: if (x.y == down) then wait();\n\n   a: if (x.z == down) then stop();",
      code: "CONFIG_RULE_DUPLICATE_LABEL",
      line: 42,
      column: 4,
      message: 'the label "a" is already used by the rule at line 40',
    },
    {
      name: "a problem on a later line of a multi-line rule",
      text: "a: if (\n    custom.x == down\n    || custom.y == dwn\n  ) then wait();",
      code: "CONFIG_RULE_STATE",
      line: 42,
      column: 20,
      message: 'unknown state "dwn"',
    },
  ];
  for (const each of cases) {
    it(`reports ${each.name}`, () => {
      const parsed = parse(each.text);
      expect(parsed.problems).toHaveLength(1);
      const problem = parsed.problems[0]!;
      expect({ code: problem.code, line: problem.line, column: problem.column }).toEqual({ code: each.code, line: each.line, column: each.column });
      expect(problem.message).toContain(each.message);
      expect(problem.severity).toBe("error");
      expect(problem.file).toBe("userconfig.xml");
      expect(problem.path).toBe("safe/service/failover");
    });
  }

  it("keeps the valid rules and drops the invalid ones", () => {
    const parsed = parse("a: if (x.y == down) then prim();\nb: if (x.z == down) then wait();\nc: if (x.z == ) then wait();");
    expect(parsed.rules.map((rule) => rule.label)).toEqual(["b"]);
    expect(parsed.problems.map((problem) => problem.code)).toEqual(["CONFIG_RULE_ACTION", "CONFIG_RULE_SYNTAX"]);
  });

  it("keeps the offending token in the problem's value", () => {
    expect(parse("a: if (x.y == down) then prim();").problems[0]!.value).toBe("prim");
  });
});

describe("parseFailoverRules: every problem in one pass", () => {
  it("resumes after each ; and reports the problems of every rule", () => {
    const text = [
      "a: if (x.y = down) then wait();", // syntax: single =
      "b: if (x.y == down) then prim();", // unknown action
      "a: if (x.y == down) then wait();", // duplicate label
      "d if (x.y == down) then wait();", // missing :
      "e: if (x.y == up) then wait();", // valid
    ].join("\n");
    const parsed = parse(text);
    expect(parsed.problems.map((problem) => [problem.code, problem.line, problem.column])).toEqual([
      ["CONFIG_RULE_SYNTAX", 40, 28],
      ["CONFIG_RULE_ACTION", 41, 26],
      ["CONFIG_RULE_DUPLICATE_LABEL", 42, 1],
      ["CONFIG_RULE_SYNTAX", 43, 3],
    ]);
    expect(parsed.rules.map((rule) => rule.label)).toEqual(["e"]);
  });

  it("reports several readable problems inside one rule", () => {
    const parsed = parse("a: if (checkfile == dwn && x.y == tru) then prim();");
    expect(parsed.problems.map((problem) => [problem.code, problem.column])).toEqual([
      ["CONFIG_RULE_RESOURCE", 24],
      ["CONFIG_RULE_STATE", 37],
      ["CONFIG_RULE_STATE", 51],
      ["CONFIG_RULE_ACTION", 61],
    ]);
    expect(parsed.rules).toEqual([]);
  });
});

describe("parseFailoverRules: limits", () => {
  it(`refuses a text of more than ${ruleTextSizeMax} bytes, counted in UTF-8`, () => {
    const rule = "a: if (x.y == down) then wait();";
    const padding = (size: number): string => " ".repeat(size - rule.length);
    expect(parse(rule + padding(ruleTextSizeMax)).problems).toEqual([]);
    const tooLarge = parse(rule + padding(ruleTextSizeMax + 1));
    expect(tooLarge.rules).toEqual([]);
    expect(tooLarge.problems.map((problem) => [problem.code, problem.line, problem.column])).toEqual([["CONFIG_RULE_LIMIT", 40, 17]]);
    expect(parse(rule + padding(ruleTextSizeMax - 1) + "é").problems.map((problem) => problem.code)).toEqual(["CONFIG_RULE_LIMIT"]);
  });

  it(`reads ${ruleCountMax} rules and refuses one more, at its label`, () => {
    const rules = Array.from({ length: ruleCountMax + 1 }, (_, index) => `r${index}: if (x.y == down) then wait();`);
    expect(parse(rules.slice(0, ruleCountMax).join("\n")).rules).toHaveLength(ruleCountMax);
    const parsed = parse(rules.join("\n"));
    expect(parsed.rules).toHaveLength(ruleCountMax);
    expect(parsed.problems.map((problem) => [problem.code, problem.line, problem.column])).toEqual([["CONFIG_RULE_LIMIT", 40 + ruleCountMax, 1]]);
  });

  it(`reads parentheses and ! nested ${ruleExpressionDepthMax} deep and refuses one more`, () => {
    const nested = (depth: number): string => `a: if (${"!(".repeat(depth / 2)}x.y == down${")".repeat(depth / 2)}) then wait();`;
    expect(parse(nested(ruleExpressionDepthMax)).problems).toEqual([]);
    const parsed = parse(nested(ruleExpressionDepthMax + 2));
    expect(parsed.problems.map((problem) => [problem.code, problem.column])).toEqual([["CONFIG_RULE_LIMIT", 17 + "a: if (".length + ruleExpressionDepthMax]]);
  });

  it("stays within the limits on hostile input that fits the size", () => {
    for (const unit of ["(", "!", "a: if (", "a:", ";", "x.y == up && ", "é"]) {
      const text = unit.repeat(Math.floor(ruleTextSizeMax / (unit.length + 1)));
      const parsed = parse(text);
      expect(parsed.problems.length).toBeGreaterThan(0);
      expect(parsed.problems.length).toBeLessThanOrEqual(ruleCountMax + 1);
    }
  });
});

describe("defaultFailoverRules", () => {
  it("are SafeKit's three default rules", () => {
    expect(defaultFailoverRules().map(formatFailoverRule)).toEqual([
      "interface_failure: if (intf.? == down) then wait();",
      "ip_failure: if (ip.? == down) then stopstart();",
      "splitbrain_failure: if (splitbrain.uptodate == down) then wait();",
    ]);
  });

  it("wait on any interface down and stopstart on any ip down", () => {
    const rules = defaultFailoverRules();
    const labels = (local: Record<string, ResourceState>): string[] => evaluateRules(rules, states(local)).map((rule) => rule.label);
    expect(labels({ "intf.eth0": "up", "ip.vip": "up", "splitbrain.uptodate": "up" })).toEqual([]);
    expect(labels({ "intf.eth0": "up", "intf.eth1": "down" })).toEqual(["interface_failure"]);
    expect(labels({ "ip.vip": "down", "splitbrain.uptodate": "down" })).toEqual(["ip_failure", "splitbrain_failure"]);
  });
});

describe("matchesResource", () => {
  const cases: readonly [pattern: string, name: string, matches: boolean][] = [
    ["intf.?", "intf.eth0", true],
    ["intf.?", "intf.e", true],
    ["intf.?", "ip.eth0", false],
    ["intf.eth?", "intf.eth0", true],
    ["intf.eth?", "intf.eth10", false],
    ["intf.eth?", "intf.eth", false],
    ["ip.*", "ip.vip", true],
    ["ip.*", "ip.", true],
    ["heartbeat.*", "heartbeat.default", true],
    ["proc.*.exe", "proc.appli.exe", true],
    ["proc.?", "proc.appli.exe", true],
    ["*.checkfile", "custom.checkfile", true],
    ["*.checkfile", "custom.other", false],
    ["*.x", "proc.a.x", false],
    ["?.x", "custom.x", true],
    ["c?stom.x", "custom.x", true],
    ["custom.x", "custom.x", true],
    ["custom.x", "custom.xy", false],
    ["custom.*a*b*", "custom.xaybz", true],
    ["custom.*a*b", "custom.xaybz", false],
  ];
  for (const [pattern, name, matches] of cases) {
    it(`${pattern} ${matches ? "matches" : "does not match"} ${name}`, () => {
      expect(matchesResource(pattern, name)).toBe(matches);
    });
  }

  it("matches a star-heavy pattern against a long name quickly", () => {
    const started = performance.now();
    expect(matchesResource(`custom.${"*a".repeat(200)}b`, `custom.${"a".repeat(10_000)}`)).toBe(false);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe("evaluateRules", () => {
  function holds(condition: string, resources: ResourceStates): boolean {
    const parsed = parse(`r: if (${condition}) then wait();`);
    expect(parsed.problems).toEqual([]);
    return evaluateRuleExpr(parsed.rules[0]!.expr, resources);
  }

  it("compares one resource with == and != (truth table)", () => {
    for (const actual of resourceStates) {
      for (const wanted of resourceStates) {
        const resources = states({ "custom.x": actual });
        expect(holds(`custom.x == ${wanted}`, resources)).toBe(actual === wanted);
        expect(holds(`custom.x != ${wanted}`, resources)).toBe(actual !== wanted);
      }
    }
  });

  it("combines with &&, || and ! (truth table)", () => {
    for (const a of [false, true]) {
      for (const b of [false, true]) {
        const resources = states({ "x.a": a ? "up" : "down", "x.b": b ? "up" : "down" });
        expect(holds("x.a == up && x.b == up", resources)).toBe(a && b);
        expect(holds("x.a == up || x.b == up", resources)).toBe(a || b);
        expect(holds("!x.a == up", resources)).toBe(!a);
        expect(holds("!(x.a == up || x.b == up)", resources)).toBe(!(a || b));
      }
    }
  });

  it("holds for a wildcard == when any matching resource is in that state", () => {
    expect(holds("intf.? == down", states({ "intf.eth0": "up", "intf.eth1": "down" }))).toBe(true);
    expect(holds("intf.? == down", states({ "intf.eth0": "up", "intf.eth1": "up" }))).toBe(false);
    expect(holds("intf.? == down", states({ "intf.eth0": "up", "ip.vip": "down" }))).toBe(false);
  });

  it("holds for a wildcard != when any matching resource is in another state", () => {
    expect(holds("intf.* != up", states({ "intf.eth0": "up", "intf.eth1": "init" }))).toBe(true);
    expect(holds("intf.* != up", states({ "intf.eth0": "up", "intf.eth1": "up" }))).toBe(false);
  });

  it("is false for a comparison on a resource that does not exist, whatever the operator", () => {
    const none = states({ "custom.other": "down" }, { "custom.x": "down" });
    expect(holds("custom.x == down", none)).toBe(false);
    expect(holds("custom.x != down", none)).toBe(false);
    expect(holds("custom.* == up", states({}))).toBe(false);
    expect(holds("custom.* != up", states({}))).toBe(false);
    expect(holds("!custom.x == up", none)).toBe(true);
  });

  it("reads local resources by default and remote ones with remote.", () => {
    const resources = states({ "heartbeat.default": "up" }, { "heartbeat.default": "down" });
    expect(holds("heartbeat.default == down", resources)).toBe(false);
    expect(holds("local.heartbeat.default == down", resources)).toBe(false);
    expect(holds("remote.heartbeat.default == down", resources)).toBe(true);
    expect(holds("remote.heartbeat.* == down", resources)).toBe(true);
  });

  it("returns the rules that hold, in rule order", () => {
    const parsed = parse("z: if (x.a == down) then stop();\ny: if (x.b == down) then wait();\nx: if (x.a == down || x.b == down) then swap();");
    const holding = evaluateRules(parsed.rules, states({ "x.a": "down", "x.b": "up" }));
    expect(holding.map((rule) => [rule.label, rule.action])).toEqual([
      ["z", "stop"],
      ["x", "swap"],
    ]);
  });
});

describe("handle_time", () => {
  const rules = parse("a: if (x.a == down) then stopstart();\nb: if (x.b == down) then wait();").rules;
  const [ruleA, ruleB] = rules as [FailoverRule, FailoverRule];

  it("runs an action only once its condition has held for handle_time", () => {
    const since = new Map([
      ["a", 1_000],
      ["b", 10_000],
    ]);
    expect(dueRules(rules, since, 15_999, 15_000).map((rule) => rule.label)).toEqual([]);
    expect(dueRules(rules, since, 16_000, 15_000).map((rule) => rule.label)).toEqual(["a"]);
    expect(dueRules(rules, since, 25_000, 15_000).map((rule) => rule.label)).toEqual(["a", "b"]);
    expect(dueRules(rules, new Map(), 99_000, 15_000)).toEqual([]);
  });

  it("runs at once with a handle_time of 0", () => {
    expect(dueRules(rules, new Map([["b", 5]]), 5, 0).map((rule) => rule.label)).toEqual(["b"]);
  });

  it("keeps the time a condition became true while it holds, and forgets it when it stops holding", () => {
    const first = trackRuleConditions(new Map(), [ruleA], 1_000);
    expect([...first]).toEqual([["a", 1_000]]);
    const second = trackRuleConditions(first, [ruleA, ruleB], 6_000);
    expect([...second]).toEqual([
      ["a", 1_000],
      ["b", 6_000],
    ]);
    const third = trackRuleConditions(second, [ruleB], 11_000);
    expect([...third]).toEqual([["b", 6_000]]);
    const fourth = trackRuleConditions(third, [ruleA, ruleB], 16_000);
    expect(dueRules(rules, fourth, 21_000, 15_000).map((rule) => rule.label)).toEqual(["b"]);
  });
});

// ---------------------------------------------------------------------------------------
// Properties

const validRuleTexts = [
  "checkfile_failure: if (custom.checkfile == down) then restart();",
  "a: if ((remote.heartbeat.* == down && local.intf.? != up) || !(ip.vip == init)) then swap();\nb: if (x.y == unknown) then stop()",
  defaultFailoverRules().map(formatFailoverRule).join("\n"),
];

type Mutation =
  | { readonly kind: "delete"; readonly at: number; readonly count: number }
  | { readonly kind: "insert"; readonly at: number; readonly text: string }
  | { readonly kind: "swap"; readonly at: number; readonly other: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    text: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("(", ")", ";", "!", "==", "&&", "||", ":", "if", "then", "*", "?", "\n", "//", "#")),
  }),
  fc.record({ kind: fc.constant("swap" as const), at: fc.nat(), other: fc.nat() }),
);

/** Applies deletions, insertions and character swaps at positions taken modulo the text's length. */
function mutate(text: string, mutations: readonly Mutation[]): string {
  let result = text;
  for (const each of mutations) {
    const at = each.at % (result.length + 1);
    if (each.kind === "delete") result = result.slice(0, at) + result.slice(at + each.count);
    else if (each.kind === "insert") result = result.slice(0, at) + each.text + result.slice(at);
    else if (result.length > 1) {
      const characters = [...result];
      const a = at % characters.length;
      const b = each.other % characters.length;
      [characters[a], characters[b]] = [characters[b]!, characters[a]!];
      result = characters.join("");
    }
  }
  return result;
}

/** Parses, checking the result's shape: the parser returns normally and quickly, and every problem lies inside the text. */
function parseChecked(text: string): void {
  const started = performance.now();
  const parsed = parse(text);
  expect(performance.now() - started).toBeLessThan(1_000);
  const lineCount = text.split("\n").length;
  for (const problem of parsed.problems) {
    expect(problem.severity).toBe("error");
    expect(problem.code).toMatch(/^CONFIG_RULE_/);
    expect(problem.line).toBeGreaterThanOrEqual(origin.line);
    expect(problem.line).toBeLessThan(origin.line + lineCount);
    expect(problem.column).toBeGreaterThanOrEqual(1);
  }
  expect(parsed.rules.length).toBeLessThanOrEqual(ruleCountMax);
}

const resourceName = fc
  .tuple(fc.constantFrom("custom", "intf", "ip", "heartbeat", "proc", "?", "c*"), fc.constantFrom("a", "b", "eth0", "?", "*", "app.exe", "e?h*"))
  .map(([className, ident]) => `${className}.${ident}`);

const ruleExpr: fc.Arbitrary<RuleExpr> = fc.letrec<{ expr: RuleExpr }>((tie) => ({
  expr: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.record({
      kind: fc.constant("compare" as const),
      scope: fc.constantFrom("local" as const, "remote" as const),
      resource: resourceName,
      operator: fc.constantFrom("==" as const, "!=" as const),
      state: fc.constantFrom(...resourceStates),
    }),
    fc.record({ kind: fc.constant("not" as const), operand: tie("expr") }),
    fc.record({ kind: fc.constant("and" as const), operands: fc.array(tie("expr"), { minLength: 2, maxLength: 3 }) }),
    fc.record({ kind: fc.constant("or" as const), operands: fc.array(tie("expr"), { minLength: 2, maxLength: 3 }) }),
  ),
})).expr;

function nesting(expr: RuleExpr): number {
  switch (expr.kind) {
    case "compare":
      return 0;
    case "not":
      return 1 + nesting(expr.operand);
    default:
      // A nested && or || inside && or || is printed in parentheses.
      return Math.max(...expr.operands.map((operand) => nesting(operand) + (operand.kind === "and" || operand.kind === "or" ? 1 : 0)));
  }
}

describe("properties", () => {
  it("never throws on random text, and locates every problem inside it", () => {
    fc.assert(fc.property(fc.string({ maxLength: 300, unit: "binary" }), (text) => parseChecked(text)));
  });

  it("never throws on random text from the rule alphabet", () => {
    const token = fc.constantFrom("a", ":", "if", "(", ")", "x.y", "==", "!=", "!", "&&", "||", "down", "then", "wait", "()", ";", " ", "\n", "=", "&", "|", "local.", "remote.", "*", "?", ".");
    fc.assert(fc.property(fc.array(token, { maxLength: 200 }), (tokens) => parseChecked(tokens.join(""))));
  });

  it("never throws on mutated valid rule texts", () => {
    fc.assert(fc.property(fc.constantFrom(...validRuleTexts), fc.array(mutation, { minLength: 1, maxLength: 6 }), (text, mutations) => parseChecked(mutate(text, mutations))));
  });

  it("parses a printed rule back to the same rule", () => {
    fc.assert(
      fc.property(ruleExpr, fc.constantFrom(...failoverActions), (expr, action) => {
        fc.pre(nesting(expr) <= ruleExpressionDepthMax);
        const text = formatFailoverRule({ label: "r", expr, action, line: 0, column: 0 });
        const parsed = parse(text);
        expect(parsed.problems).toEqual([]);
        expect(parsed.rules[0]!.expr).toEqual(expr);
        expect(formatRuleExpr(parsed.rules[0]!.expr)).toBe(formatRuleExpr(expr));
      }),
    );
  });

  it("evaluates ! as the negation and a wildcard as any of its matches", () => {
    const stateMap = fc.dictionary(
      fc.constantFrom("intf.eth0", "intf.eth1", "ip.vip", "custom.a", "custom.b", "proc.app.exe"),
      fc.constantFrom(...resourceStates),
    );
    fc.assert(
      fc.property(ruleExpr, stateMap, stateMap, (expr, local, remote) => {
        const resources = states(local, remote);
        expect(evaluateRuleExpr({ kind: "not", operand: expr }, resources)).toBe(!evaluateRuleExpr(expr, resources));
        if (expr.kind !== "compare") return;
        const scoped = expr.scope === "remote" ? resources.remote : resources.local;
        const matching = [...scoped].filter(([name]) => matchesResource(expr.resource, name)).map(([, state]) => state);
        const expected = matching.some((state) => (expr.operator === "==" ? state === expr.state : state !== expr.state));
        expect(evaluateRuleExpr(expr, resources)).toBe(expected);
      }),
    );
  });
});
