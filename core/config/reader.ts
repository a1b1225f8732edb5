// Reads one XML element as a typed section, recording every problem with its location.
// A pure module: it performs no I/O.
//
// Each accessor marks the attribute or child it reads; `finish()` reports what was left
// unread: a warning (SafeKit has many settings tandem does not act on yet), or an error
// when the setting is known to change safety and tandem cannot honour it yet.

import type { ConfigProblem, Severity } from "./problems.ts";
import { expandMacros, parseBoolean, parseInteger, parseTime, type Parsed, type TimeUnit } from "./values.ts";
import type { XmlAttribute, XmlElement } from "./xml-tree.ts";

export interface ReadContext {
  readonly file: string;
  readonly problems: ConfigProblem[];
  readonly macros: ReadonlyMap<string, string>;
  readonly environment: Readonly<Record<string, string | undefined>>;
  /** Settings tandem does not support whose absence changes safety: `element@attribute` or `element`, with why. */
  readonly unsafeIfIgnored: ReadonlyMap<string, string>;
}

export class ElementReader {
  readonly element: XmlElement;
  readonly context: ReadContext;
  readonly #readAttributes = new Set<string>();
  readonly #readChildren = new Set<XmlElement>();

  constructor(context: ReadContext, element: XmlElement) {
    this.context = context;
    this.element = element;
  }

  get name(): string {
    return this.element.name;
  }

  /** Reports a problem at this element, or at one of its attributes. */
  report(severity: Severity, code: string, message: string, attribute?: XmlAttribute): void {
    this.context.problems.push({
      severity,
      code,
      file: this.context.file,
      line: attribute?.line ?? this.element.line,
      column: attribute?.column ?? this.element.column,
      path: this.element.path,
      ...(attribute === undefined ? {} : { attribute: attribute.name, value: attribute.value }),
      message,
    });
  }

  /** The attribute's raw text after macro expansion, or undefined when absent. */
  raw(name: string): XmlAttribute | undefined {
    this.#readAttributes.add(name);
    const attribute = this.element.attributes.find((each) => each.name === name);
    if (attribute === undefined) return undefined;
    const expanded = expandMacros(attribute.value, this.context.macros, this.context.environment);
    for (const undefinedName of expanded.undefinedNames) {
      this.report("error", "CONFIG_UNDEFINED_MACRO", `%${undefinedName}% is neither a <macro> of this module nor an environment variable`, attribute);
    }
    return { ...attribute, value: expanded.text };
  }

  #parse<T>(name: string, parse: (text: string) => Parsed<T>, fallback: T, required: boolean): T {
    const attribute = this.raw(name);
    if (attribute === undefined) {
      if (required) this.report("error", "CONFIG_MISSING_ATTRIBUTE", `attribute ${name} is required`);
      return fallback;
    }
    const parsed = parse(attribute.value);
    if (parsed.ok) return parsed.value;
    this.report("error", "CONFIG_INVALID_VALUE", `expected ${parsed.expected}`, attribute);
    return fallback;
  }

  string(name: string, fallback: string, options: { required?: boolean; nonEmpty?: boolean } = {}): string {
    return this.#parse(name, (text) => (options.nonEmpty === true && text.trim() === "" ? { ok: false, expected: "a non-empty value" } : { ok: true, value: text }), fallback, options.required === true);
  }

  optionalString(name: string): string | undefined {
    return this.raw(name)?.value;
  }

  enumeration<T extends string>(name: string, allowed: readonly T[], fallback: T, options: { required?: boolean } = {}): T {
    const expected = allowed.length <= 2 ? allowed.join(" or ") : `one of ${allowed.join(", ")}`;
    return this.#parse(name, (text) => (allowed.includes(text.trim() as T) ? { ok: true, value: text.trim() as T } : { ok: false, expected }), fallback, options.required === true);
  }

  bool(name: string, fallback: boolean): boolean {
    return this.#parse(name, parseBoolean, fallback, false);
  }

  int(name: string, fallback: number, min: number, max: number, options: { required?: boolean } = {}): number {
    return this.#parse(name, (text) => parseInteger(text, min, max), fallback, options.required === true);
  }

  /** A duration in milliseconds; `unit` is what a bare number means. */
  time(name: string, unit: TimeUnit, fallbackMs: number): number {
    return this.#parse(name, (text) => parseTime(text, unit), fallbackMs, false);
  }

  /** Every child named `name`, as readers. */
  children(name: string): ElementReader[] {
    const found = this.element.children.filter((child) => child.name === name);
    for (const child of found) this.#readChildren.add(child);
    return found.map((child) => new ElementReader(this.context, child));
  }

  /** The one child named `name`, if any; a second one is an error. */
  child(name: string): ElementReader | undefined {
    const found = this.children(name);
    for (const extra of found.slice(1)) extra.report("error", "CONFIG_DUPLICATE_ELEMENT", `<${name}> may appear only once in <${this.name}>`);
    return found[0];
  }

  /** The element's text (and CDATA) after macro expansion. */
  text(): string {
    const expanded = expandMacros(this.element.text, this.context.macros, this.context.environment);
    for (const undefinedName of expanded.undefinedNames) {
      this.report("error", "CONFIG_UNDEFINED_MACRO", `%${undefinedName}% is neither a <macro> of this module nor an environment variable`);
    }
    return expanded.text;
  }

  /** Reports the attributes and children nobody read. Call once the element is read. */
  finish(): void {
    for (const attribute of this.element.attributes) {
      if (this.#readAttributes.has(attribute.name)) continue;
      const why = this.context.unsafeIfIgnored.get(`${this.name}@${attribute.name}`);
      if (why !== undefined) this.report("error", "CONFIG_UNSUPPORTED_UNSAFE", `tandem does not support ${attribute.name} yet, and ignoring it would be unsafe: ${why}`, attribute);
      else this.report("warning", "CONFIG_UNKNOWN_ATTRIBUTE", `attribute ${attribute.name} is not used by tandem; it is ignored`, attribute);
    }
    for (const child of this.element.children) {
      if (this.#readChildren.has(child)) continue;
      const reader = new ElementReader(this.context, child);
      const why = this.context.unsafeIfIgnored.get(child.name);
      if (why !== undefined) reader.report("error", "CONFIG_UNSUPPORTED_UNSAFE", `tandem does not support <${child.name}> here yet, and ignoring it would be unsafe: ${why}`);
      else reader.report("warning", "CONFIG_UNKNOWN_ELEMENT", `<${child.name}> is not used by tandem inside <${this.name}>; it is ignored`);
    }
  }
}
