// XML text to a tree of elements that know where they stand in the file.
// A pure module: it performs no I/O (fast-xml-parser is pure computation).
//
// fast-xml-parser gives each element's start offset (captureMetaData); attribute
// positions are found by scanning the element's start tag. Syntax errors come from its
// validator with line and column. Input size, element count and nesting are bounded, so
// hostile input cannot make parsing slow or deep.

import { XMLParser, XMLValidator } from "fast-xml-parser";
import type { ConfigProblem } from "./problems.ts";

export const xmlSizeMax = 1_048_576;
export const xmlElementCountMax = 20_000;
export const xmlDepthMax = 32;

export interface XmlAttribute {
  readonly name: string;
  readonly value: string;
  readonly line: number;
  readonly column: number;
}

export interface XmlElement {
  readonly name: string;
  /** Slash-separated names from the root, e.g. `safe/service/heart`. */
  readonly path: string;
  readonly line: number;
  readonly column: number;
  readonly attributes: readonly XmlAttribute[];
  readonly children: readonly XmlElement[];
  /** Text and CDATA content, concatenated, untrimmed. */
  readonly text: string;
  /** Where that content begins (inside the CDATA section when it opens one), so that a
   *  position in `text` maps back to the file; exact from the first line break on. */
  readonly textLine: number;
  readonly textColumn: number;
}

export interface XmlDocument {
  readonly file: string;
  readonly root: XmlElement | null;
  readonly problems: readonly ConfigProblem[];
}

type OrderedNode = Record<string, unknown> & { ":@"?: Record<string, string> };

const metadata = XMLParser.getMetaDataSymbol() as unknown as symbol;

export function parseXml(file: string, text: string): XmlDocument {
  const fail = (code: string, message: string, line = 0, column = 0): XmlDocument => ({
    file,
    root: null,
    problems: [{ severity: "error", code, file, line, column, path: "", message }],
  });
  if (text.length > xmlSizeMax) return fail("CONFIG_TOO_LARGE", `the file is ${text.length} characters; at most ${xmlSizeMax} are read`);
  const depth = maxDepth(text);
  if (depth > xmlDepthMax) return fail("CONFIG_TOO_DEEP", `elements are nested ${depth} deep; at most ${xmlDepthMax} levels are read`);
  const verdict = XMLValidator.validate(text, { allowBooleanAttributes: false });
  if (verdict !== true) return fail("CONFIG_XML_SYNTAX", `not well-formed XML: ${verdict.err.msg}`, verdict.err.line, verdict.err.col);
  let nodes: OrderedNode[];
  try {
    const parser = new XMLParser({
      preserveOrder: true,
      ignoreAttributes: false,
      attributeNamePrefix: "",
      captureMetaData: true,
      parseAttributeValue: false,
      parseTagValue: false,
      trimValues: false,
      processEntities: true,
      htmlEntities: false,
      ignoreDeclaration: true,
      ignorePiTags: true,
      commentPropName: "#comment",
      cdataPropName: "#cdata",
    });
    nodes = parser.parse(text) as OrderedNode[];
  } catch (error) {
    return fail("CONFIG_XML_SYNTAX", `not well-formed XML: ${error instanceof Error ? error.message : String(error)}`);
  }
  const lines = lineStarts(text);
  const counter = { count: 0 };
  const roots = nodes.flatMap((node) => toElement(node, "", text, lines, counter));
  if (counter.count > xmlElementCountMax) return fail("CONFIG_TOO_LARGE", `the file has ${counter.count} elements; at most ${xmlElementCountMax} are read`);
  if (roots.length !== 1) return fail("CONFIG_XML_SYNTAX", `expected exactly one root element, found ${roots.length}`);
  return { file, root: roots[0]!, problems: [] };
}

function toElement(node: OrderedNode, parentPath: string, text: string, lines: readonly number[], counter: { count: number }): XmlElement[] {
  const name = Object.keys(node).find((key) => key !== ":@");
  if (name === undefined || name.startsWith("#") || name === "?xml") return [];
  counter.count++;
  if (counter.count > xmlElementCountMax) return [];
  const path = parentPath === "" ? name : `${parentPath}/${name}`;
  const start = (node as Record<symbol, { startIndex?: number } | undefined>)[metadata]?.startIndex ?? 0;
  const [line, column] = position(lines, start);
  const content = (node[name] as OrderedNode[] | undefined) ?? [];
  const children: XmlElement[] = [];
  let body = "";
  for (const child of content) {
    if ("#text" in child) body += String(child["#text"]);
    else if ("#cdata" in child) body += cdataText(child["#cdata"]);
    else children.push(...toElement(child, path, text, lines, counter));
  }
  const attributes = Object.entries(node[":@"] ?? {}).map(([attribute, value]) => {
    const offset = attributeOffset(text, start, attribute);
    const [attrLine, attrColumn] = position(lines, offset);
    return { name: attribute, value: String(value), line: attrLine, column: attrColumn };
  });
  const [textLine, textColumn] = position(lines, contentStart(text, start));
  return [{ name, path, line, column, attributes, children, text: body, textLine, textColumn }];
}

/** Offset of an element's content: after its start tag, and after `<![CDATA[` if it opens one. */
function contentStart(text: string, start: number): number {
  const tagEnd = text.indexOf(">", start);
  if (tagEnd < 0) return start;
  const after = tagEnd + 1;
  return text.startsWith("<![CDATA[", after) ? after + "<![CDATA[".length : after;
}

function cdataText(value: unknown): string {
  if (Array.isArray(value)) return value.map((part) => String((part as Record<string, unknown>)["#text"] ?? "")).join("");
  return String(value ?? "");
}

/** Offset of `name=` inside the start tag beginning at `start`, or the tag's offset. */
function attributeOffset(text: string, start: number, name: string): number {
  const tagEnd = text.indexOf(">", start);
  const tag = text.slice(start, tagEnd < 0 ? text.length : tagEnd);
  const match = new RegExp(`\\s(${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")})\\s*=`).exec(tag);
  return match === null ? start : start + match.index + 1;
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let index = 0; index < text.length; index++) if (text.charCodeAt(index) === 10) starts.push(index + 1);
  return starts;
}

/** 1-based line and column of an offset. */
function position(lines: readonly number[], offset: number): [number, number] {
  let low = 0;
  let high = lines.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (lines[middle]! <= offset) low = middle;
    else high = middle - 1;
  }
  return [low + 1, offset - lines[low]! + 1];
}

/** A cheap upper bound of the nesting depth, checked before the real parser runs. */
function maxDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  for (let index = text.indexOf("<"); index >= 0; index = text.indexOf("<", index + 1)) {
    const next = text[index + 1];
    if (next === "/") depth--;
    else if (next !== "!" && next !== "?") {
      const close = text.indexOf(">", index);
      if (close < 0) break;
      if (text[close - 1] !== "/") deepest = Math.max(deepest, ++depth);
    }
  }
  return deepest;
}
