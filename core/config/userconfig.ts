// userconfig.xml to a typed, frozen ModuleConfig, with every problem located.
// A pure module: the file's text and the environment come in as arguments.
//
// What a SafeKit 8 module file says, tandem reads the same way (../shared/userconfig.md):
// element and attribute names, defaults, units, macros. Settings tandem does not act on
// are warnings, except those whose silent omission would change safety, which are errors.

import { defaultFailoverRules, parseFailoverRules } from "./failover-rules.ts";
import type { Checker, DefaultPrim, FailoverSection, ModuleConfig, ModuleMode, ServiceSettings, UserSection } from "./module-config.ts";
import { hasErrors, type ConfigProblem } from "./problems.ts";
import { ElementReader, type ReadContext } from "./reader.ts";
import { readCheck } from "./sections/check.ts";
import { readErrd } from "./sections/errd.ts";
import { readFarm } from "./sections/farm.ts";
import { readHeart } from "./sections/heart.ts";
import { readRfs } from "./sections/rfs.ts";
import { readVip } from "./sections/vip.ts";
import { expandMacros } from "./values.ts";
import { parseXml, type XmlElement } from "./xml-tree.ts";

export interface UserconfigInput {
  /** The module's name (its directory), e.g. `web`. */
  readonly moduleName: string;
  /** How problems name the file, e.g. `modules/web/conf/userconfig.xml`. */
  readonly file: string;
  readonly text: string;
  /** For `%NAME%` not defined by a <macro>. */
  readonly environment: Readonly<Record<string, string | undefined>>;
}

export interface UserconfigResult {
  /** Null when an error makes the module unusable; problems say why. */
  readonly module: ModuleConfig | null;
  readonly problems: readonly ConfigProblem[];
  /** The parsed tree, for cross-checks that need to locate an element. */
  readonly root: XmlElement | null;
}

/** Which <service> children each mode has (SafeKit's lists). */
const childrenOf: Readonly<Record<ModuleMode, readonly string[]>> = {
  mirror: ["heart", "rfs", "vip", "user", "vhost", "errd", "check", "failover"],
  farm: ["farm", "vip", "user", "vhost", "errd", "check", "failover"],
  light: ["user", "vhost", "errd", "check", "failover"],
};
const requiredOf: Readonly<Record<ModuleMode, readonly string[]>> = { mirror: ["heart", "rfs"], farm: ["farm"], light: [] };
const knownCheckers = new Set(["tcp", "ping", "intf", "ip", "custom", "module", "splitbrain"]);

/** Settings tandem does not support yet whose silent omission would change safety. */
const unsafeIfIgnored: ReadonlyMap<string, string> = new Map([
  ["rfs@syncat", "the operator asked for scheduled synchronisation; replicating in real time instead would copy a corruption to the secondary at once"],
]);

export function readUserconfig(input: UserconfigInput): UserconfigResult {
  const document = parseXml(input.file, input.text);
  const problems: ConfigProblem[] = [...document.problems];
  if (document.root === null) return { module: null, problems, root: null };
  const macros = readMacros(document.root, input, problems);
  const context: ReadContext = { file: input.file, problems, macros, environment: input.environment, unsafeIfIgnored };
  const safe = new ElementReader(context, document.root);
  if (safe.name !== "safe") {
    safe.report("error", "CONFIG_WRONG_ROOT", `the root element of a userconfig.xml is <safe>, not <${safe.name}>`);
    return { module: null, problems, root: document.root };
  }
  safe.children("macro");
  const services = safe.children("service");
  if (services.length !== 1) safe.report("error", "CONFIG_MISSING_ELEMENT", `<safe> must hold exactly one <service>, found ${services.length}`);
  const module = services[0] === undefined ? null : readService(services[0], input.moduleName, [...macros].map(([name, value]) => ({ name, value })));
  safe.finish();
  return { module: module === null || hasErrors(problems) ? null : deepFreeze(module), problems, root: document.root };
}

function readMacros(root: XmlElement, input: UserconfigInput, problems: ConfigProblem[]): Map<string, string> {
  const macros = new Map<string, string>();
  const context: ReadContext = { file: input.file, problems, macros: new Map(), environment: input.environment, unsafeIfIgnored: new Map() };
  for (const element of root.children.filter((child) => child.name === "macro")) {
    const reader = new ElementReader(context, element);
    const name = reader.string("name", "", { required: true, nonEmpty: true });
    // A macro's value may use environment variables, not other macros.
    const value = expandMacros(reader.string("value", "", { required: true }), new Map(), input.environment).text;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && name !== "") reader.report("error", "CONFIG_INVALID_VALUE", `macro name ${name} must be letters, digits and _ (it is used as %${name}%)`);
    if (macros.has(name)) reader.report("error", "CONFIG_DUPLICATE", `macro ${name} is defined twice`);
    macros.set(name, value);
    reader.finish();
  }
  return macros;
}

function readService(service: ElementReader, moduleName: string, macros: ModuleConfig["macros"]): ModuleConfig {
  const mode = service.enumeration<ModuleMode>("mode", ["mirror", "farm", "light"], "light", { required: true });
  const settings = readServiceSettings(service, mode);
  for (const child of service.element.children) {
    const owner = (["mirror", "farm", "light"] as const).filter((each) => childrenOf[each].includes(child.name));
    if (!childrenOf[mode].includes(child.name) && owner.length > 0) {
      service.children(child.name); // reported here, not again as unknown
      new ElementReader(service.context, child).report("error", "CONFIG_WRONG_MODE", `<${child.name}> belongs to ${owner.join(" or ")} modules; this module's mode is ${mode}`);
    }
  }
  for (const required of requiredOf[mode]) {
    if (!service.element.children.some((child) => child.name === required)) service.report("error", "CONFIG_MISSING_ELEMENT", `a ${mode} module needs a <${required}> element`);
  }
  const read = <T>(name: string, reader: (element: ElementReader) => T): T | null => {
    if (!childrenOf[mode].includes(name)) return null;
    const element = service.child(name);
    return element === undefined ? null : reader(element);
  };
  const module: ModuleConfig = {
    name: moduleName,
    mode,
    service: settings,
    macros,
    heart: read("heart", readHeart),
    farm: read("farm", readFarm),
    vip: read("vip", (vip) => readVip(vip, mode)),
    rfs: read("rfs", readRfs),
    user: read("user", readUser),
    errd: read("errd", (errd) => readErrd(errd, mode)),
    checkers: read("check", (check) => readCheckers(check, mode)) ?? [],
    failover: read("failover", readFailover) ?? { extends: true, periodMs: 5_000, handleTimeMs: 15_000, text: "", rules: defaultFailoverRules() },
  };
  service.finish();
  return module;
}

function readServiceSettings(service: ElementReader, mode: ModuleMode): ServiceSettings {
  const defaultPrimText = service.string("defaultprim", "alone").trim();
  const defaultPrim: DefaultPrim = defaultPrimText === "alone" ? { kind: "alone" } : defaultPrimText === "lastprim" ? { kind: "lastprim" } : { kind: "node", node: defaultPrimText };
  if (mode !== "mirror" && defaultPrimText !== "alone") service.report("warning", "CONFIG_IGNORED", `defaultprim only applies to mirror modules; this module's mode is ${mode}`);
  return {
    boot: service.enumeration("boot", ["off", "on", "auto", "ignore"], "ignore"),
    bootDelayMs: service.time("boot_delay", "s", 0),
    failover: service.bool("failover", true),
    defaultPrim,
    maxLoop: service.int("maxloop", 3, 0, 1_000),
    loopIntervalMs: service.time("loop_interval", "h", 24 * 3_600_000),
    automaticReboot: service.bool("automatic_reboot", false),
  };
}

function readUser(user: ElementReader): UserSection {
  const vars = user.children("var").map((variable) => {
    const name = variable.string("name", "", { required: true, nonEmpty: true });
    if (name !== "" && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) variable.report("error", "CONFIG_INVALID_VALUE", `variable name ${name} must be letters, digits and _, since scripts receive it as an environment variable`);
    const value = variable.string("value", "", { required: true });
    variable.finish();
    return { name, value };
  });
  const section: UserSection = {
    niceStopTimeoutMs: user.time("nicestoptimeout", "s", 300_000),
    forceStopTimeoutMs: user.time("forcestoptimeout", "s", 300_000),
    logging: user.string("logging", "userlog"),
    vars,
  };
  user.finish();
  return section;
}

function readCheckers(check: ElementReader, mode: ModuleMode): readonly Checker[] {
  const before = check.context.problems.length;
  const checkers = readCheck(check, mode);
  // An unknown checker is an error, not a warning: the module would silently not react
  // to the failure the operator configured it to catch.
  const problems = check.context.problems;
  for (let index = before; index < problems.length; index++) {
    const problem = problems[index]!;
    const element = problem.path.split("/").at(-1) ?? "";
    if (problem.code === "CONFIG_UNKNOWN_ELEMENT" && problem.path === `${check.element.path}/${element}` && !knownCheckers.has(element)) {
      problems[index] = { ...problem, severity: "error", code: "CONFIG_UNSUPPORTED_UNSAFE", message: `tandem has no <${element}> checker yet; the module would not react to the failure it is meant to catch (known: ${[...knownCheckers].join(", ")})` };
    }
  }
  return checkers;
}

function readFailover(failover: ElementReader): FailoverSection {
  const text = failover.text();
  const extendsDefaults = failover.bool("extends", true);
  const parsed = parseFailoverRules(text, { file: failover.context.file, line: failover.element.textLine, column: failover.element.textColumn });
  failover.context.problems.push(...parsed.problems);
  const own = new Set(parsed.rules.map((rule) => rule.label));
  const defaults = extendsDefaults ? defaultFailoverRules().filter((rule) => !own.has(rule.label)) : [];
  if (!extendsDefaults && parsed.rules.length === 0) {
    failover.report("warning", "CONFIG_NO_RULES", `extends="no" with no rule of its own: no checker failure will trigger any action`);
  }
  const section: FailoverSection = {
    extends: extendsDefaults,
    periodMs: failover.time("period", "ms", 5_000),
    handleTimeMs: failover.time("handle_time", "ms", 15_000),
    text,
    rules: [...defaults, ...parsed.rules],
  };
  failover.finish();
  return section;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}
