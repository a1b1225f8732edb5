// Shared names of the core. A pure module: it performs no I/O.

/** A cluster node's name, as in cluster.xml (`<node name="s1">`). */
export type NodeId = string;

/** A heartbeat network ("ring"), as in cluster.xml (`<lan name="default">`). */
export type RingId = string;

export type LogLevel = "debug" | "info" | "warn" | "error";

/** One structured log event: `event` is a stable dotted name operators grep for. */
export interface LogEntry {
  readonly level: LogLevel;
  readonly event: string;
  readonly fields: Readonly<Record<string, string | number | boolean | null>>;
}

/** The result of one core step: the next state and the effects the runtime must execute, in order. */
export interface StepResult<State, Effect> {
  readonly state: State;
  readonly effects: readonly Effect[];
}
