// A scenario's timeline: one line per event the scenario notes or a node logs, stamped with
// virtual time, kept and handed to a printer as it happens (the scenario clusters share it;
// test/scenarios/timelines/ compares farm timelines exactly, so the format is fixed).

export function timelineLine(atMs: number, text: string): string {
  return `${(atMs / 1000).toFixed(3).padStart(8)} s  ${text}`;
}

/** A log entry's fields as `key=value` pairs, without the module and node every entry has. */
export function timelineFields(fields: Readonly<Record<string, string | number | boolean | null>>): string {
  return Object.entries(fields)
    .filter(([key]) => key !== "module" && key !== "node")
    .map(([key, value]) => `${key}=${value}`)
    .join(" ");
}
