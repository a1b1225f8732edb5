// Configuration problems: errors and warnings located in the user's files.
// A pure module: it performs no I/O.

export type Severity = "error" | "warning";

export interface ConfigProblem {
  readonly severity: Severity;
  /** Stable code, e.g. CONFIG_INVALID_VALUE, CONFIG_UNKNOWN_ELEMENT. */
  readonly code: string;
  readonly file: string;
  /** 1-based; 0 when the problem is about the file as a whole. */
  readonly line: number;
  readonly column: number;
  /** Element path, e.g. `safe/service/vip/loadbalancing_list/group/rule`. */
  readonly path: string;
  readonly attribute?: string;
  readonly value?: string;
  /** What is wrong and what is allowed, for a human. */
  readonly message: string;
}

/** `userconfig.xml:14:7 <rule filter="on_ip">: expected on_addr or on_port` */
export function formatProblem(problem: ConfigProblem): string {
  const where = problem.line > 0 ? `${problem.file}:${problem.line}:${problem.column}` : problem.file;
  const element = problem.path.split("/").at(-1) ?? "";
  const subject = problem.attribute === undefined ? (element === "" ? "" : ` <${element}>`) : ` <${element} ${problem.attribute}="${problem.value ?? ""}">`;
  return `${where}${subject}: ${problem.severity === "warning" ? "warning: " : ""}${problem.message}`;
}

export function hasErrors(problems: readonly ConfigProblem[]): boolean {
  return problems.some((problem) => problem.severity === "error");
}

/** Thrown only for input the parser refuses to look at (too large); everything else is a problem value. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.problems = problems;
  }
}
