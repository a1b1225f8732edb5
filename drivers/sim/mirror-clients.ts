// Simulated applications writing to a mirror module: each client owns the files under
// its own directory (`c<k>/`), issues one operation at a time through the module's VIP,
// waits for the answer, and keeps a model of what its files must hold from the answers
// it got. That model is what the checker compares the nodes' trees with.
//
// A path whose last operation failed, timed out or was in flight during a double failure
// (both nodes down, one of them losing power) without being fsync-acknowledged becomes
// uncertain: its content is not checked, and the client never touches it again. An
// operation no node took (no VIP holder), waiting to be sent again, is in flight too.
//
// Operations: create, write at random offsets and sizes, truncate, setattr, rename to a
// new name, unlink, symlink, mkdir, a second name (hard link) written through afterwards,
// extended attributes set and removed, fsync of a file and of the whole tree, and reads of a file back from the current primary
// (checked against the model at once). The names of one file share one model entry: what
// happens to the file through one of them (a write, an fsync, a doubt) is the others' too.

import { describeOp, parentOf, pathsOf, type DiskOp, type DiskResult } from "../../core/mirror/disk-ops.ts";
import type { Gen } from "../../core/mirror/meta.ts";
import type { Prng } from "./prng.ts";

export interface ClientSettings {
  readonly count: number;
  /** Pause between an answer and the next operation. */
  readonly thinkMs: number;
  /** An operation unanswered this long is given up (its paths become uncertain). */
  readonly timeoutMs: number;
  readonly maxWrite: number;
  readonly maxOffset: number;
}

export const defaultClientSettings: ClientSettings = { count: 3, thinkMs: 5, timeoutMs: 8_000, maxWrite: 6_000, maxOffset: 40_000 };

export type Expected =
  /** `names`: every name of a file that was given another (absent: its path alone);
   *  `everNames`: those and the names it had before (a split brain's loser may have kept
   *  the file aside under any of them). */
  /** `xattrs`: its extended attributes, name → value in hex (absent: none yet). */
  | { readonly kind: "file"; content: Uint8Array; mode: number; names?: Set<string>; everNames?: Set<string>; xattrs?: Map<string, string> }
  | { readonly kind: "dir"; readonly mode: number }
  | { readonly kind: "symlink"; readonly target: string };

/** What the world does for the clients. */
export interface ClientWorld {
  nowMs(): number;
  schedule(afterMs: number, run: () => void): void;
  /** Sends `op` to whichever node holds the VIP; `done` gets its answer, or "unreachable"
   *  at once when no node holds it. Never called back for a node that died meanwhile. */
  submit(op: DiskOp, done: (result: DiskResult | "unreachable", node: string, gen: Gen | null) => void): void;
  /** Reads file `path` on the VIP holder's tree as the application sees it (null bytes: no
   *  such file); null when no node holds the VIP. */
  read(path: string): { node: string; bytes: Uint8Array | null } | null;
  violation(kind: string, detail: string): void;
}

export interface AckRecord {
  readonly atMs: number;
  readonly client: number;
  readonly op: string;
  readonly node: string;
  readonly gen: Gen | null;
  readonly paths: readonly string[];
}

interface Client {
  readonly index: number;
  readonly dir: string;
  nextName: number;
  current: string | null;
  /** `ackedBefore`: how many operations were acknowledged when it was sent (an fsync of
   *  the whole tree covers those, not what is acknowledged while it is under way). */
  inFlight: { op: DiskOp; sentMs: number; token: number; ackedBefore: number } | null;
  /** An operation no node took (no VIP holder), to be sent again: in flight to the client. */
  retrying: DiskOp | null;
  started: boolean;
}

export class MirrorClients {
  readonly settings: ClientSettings;
  /** The model: every path the clients made, with what it must hold. */
  readonly expected = new Map<string, Expected | null>();
  readonly uncertain = new Set<string>();
  /** Paths changed since the last fsync that covers them. */
  /** Paths changed and not yet covered by an fsync, each with the number of the
   *  acknowledgement that last changed it. */
  readonly unsynced = new Map<string, number>();
  #ackCount = 0;
  readonly acks: AckRecord[] = [];
  readonly stats = { sent: 0, acked: 0, failed: 0, timedOut: 0, unreachable: 0, reads: 0, readChecks: 0 };
  #running = false;
  #token = 0;
  readonly #clients: Client[];
  readonly #world: ClientWorld;
  readonly #prng: Prng;
  /** Read-back checks are meaningless once a split brain let two trees diverge. */
  checkReads = true;

  constructor(world: ClientWorld, prng: Prng, settings: Partial<ClientSettings> = {}) {
    this.settings = { ...defaultClientSettings, ...settings };
    this.#world = world;
    this.#prng = prng;
    this.#clients = Array.from({ length: this.settings.count }, (_, index) => ({ index, dir: `c${index}`, nextName: 0, current: null, inFlight: null, retrying: null, started: false }));
  }

  get running(): boolean {
    return this.#running;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    for (const client of this.#clients) if (client.inFlight === null) this.#world.schedule(this.#prng.int(0, 20), () => this.#next(client));
  }

  /** Stops issuing; operations in flight still get their answers (or time out). */
  stop(): void {
    this.#running = false;
  }

  get idle(): boolean {
    return this.#clients.every((client) => client.inFlight === null);
  }

  /** Both nodes were down at once with a power loss: what was not fsync-acknowledged may be gone. */
  doubleFailure(): void {
    for (const path of this.unsynced.keys()) this.#forget(path);
    for (const client of this.#clients) {
      const op = client.inFlight?.op ?? client.retrying;
      if (op !== null && op !== undefined) for (const path of pathsOf(op)) this.#forget(path);
    }
    this.unsynced.clear();
  }

  #forget(path: string): void {
    for (const name of this.#namesOf(path)) {
      this.uncertain.add(name);
      for (const client of this.#clients) if (client.current === name) client.current = null;
    }
  }

  /** Every name of the file at `path` (its path alone for anything else). */
  #namesOf(path: string): readonly string[] {
    const entry = this.expected.get(path);
    return entry?.kind === "file" && entry.names !== undefined ? [...entry.names] : [path];
  }

  /** The file at `path` changed: through each of its names, unsynced. */
  #changed(path: string): void {
    for (const name of this.#namesOf(path)) this.unsynced.set(name, this.#ackCount);
  }

  #certain(path: string): boolean {
    return !this.uncertain.has(path);
  }

  #certainWithAncestors(path: string): boolean {
    for (let at = path; at !== ""; at = parentOf(at)) if (!this.#certain(at)) return false;
    return true;
  }

  #next(client: Client): void {
    if (!this.#running || client.inFlight !== null) return;
    const op = this.#choose(client);
    if (op === null) {
      this.#world.schedule(this.settings.thinkMs, () => this.#next(client));
      return;
    }
    this.#send(client, op);
  }

  #send(client: Client, op: DiskOp): void {
    const token = ++this.#token;
    client.inFlight = { op, sentMs: this.#world.nowMs(), token, ackedBefore: this.#ackCount };
    this.stats.sent++;
    this.#world.submit(op, (result, node, gen) => this.#answered(client, token, result, node, gen));
    this.#world.schedule(this.settings.timeoutMs, () => {
      if (client.inFlight?.token !== token) return;
      this.stats.timedOut++;
      for (const path of pathsOf(op)) this.#forget(path);
      client.inFlight = null;
      this.#world.schedule(this.settings.thinkMs, () => this.#next(client));
    });
  }

  #answered(client: Client, token: number, result: DiskResult | "unreachable", node: string, gen: Gen | null): void {
    const flight = client.inFlight;
    if (flight === null || flight.token !== token) return;
    client.inFlight = null;
    const { op } = flight;
    if (result === "unreachable") {
      // Not delivered anywhere: try the same operation again later.
      this.stats.unreachable++;
      this.stats.sent--;
      client.retrying = op;
      this.#world.schedule(50, () => {
        if (!this.#running || client.inFlight !== null) return;
        client.retrying = null;
        this.#send(client, op);
      });
      return;
    }
    if (result !== null) {
      this.stats.failed++;
      const semantic = result !== "EIO" && result !== "EROFS" && result !== "ENOSPC";
      const paths = pathsOf(op);
      // A path is known only if its directories are (an operation retried across a double
      // failure may find its directory gone with it).
      if (semantic && paths.every((path) => this.#certainWithAncestors(path))) this.#world.violation("M1", `${describeOp(op)} answered ${result} by ${node}, but the client's acknowledged history says it must succeed`);
      for (const path of paths) this.#forget(path);
    } else {
      this.stats.acked++;
      this.acks.push({ atMs: this.#world.nowMs(), client: client.index, op: describeOp(op), node, gen, paths: pathsOf(op) });
      this.#ackCount++;
      this.#apply(op, flight.ackedBefore);
    }
    this.#world.schedule(this.settings.thinkMs, () => this.#next(client));
  }

  /** The model after an acknowledged operation, sent when `ackedBefore` were. */
  #apply(op: DiskOp, ackedBefore: number): void {
    const model = this.expected;
    switch (op.kind) {
      case "create":
        model.set(op.path, { kind: "file", content: new Uint8Array(0), mode: op.mode });
        this.unsynced.set(op.path, this.#ackCount);
        return;
      case "mkdir":
        model.set(op.path, { kind: "dir", mode: op.mode });
        this.unsynced.set(op.path, this.#ackCount);
        return;
      case "symlink":
        model.set(op.path, { kind: "symlink", target: op.target });
        this.unsynced.set(op.path, this.#ackCount);
        return;
      case "write": {
        const entry = model.get(op.path);
        if (entry?.kind !== "file") return;
        const end = op.offset + op.data.length;
        if (end > entry.content.length) {
          const grown = new Uint8Array(end);
          grown.set(entry.content);
          entry.content = grown;
        }
        entry.content.set(op.data, op.offset);
        this.#changed(op.path);
        return;
      }
      case "truncate": {
        const entry = model.get(op.path);
        if (entry?.kind !== "file") return;
        const next = new Uint8Array(op.size);
        next.set(entry.content.subarray(0, Math.min(op.size, entry.content.length)));
        entry.content = next;
        this.#changed(op.path);
        return;
      }
      case "setattr": {
        const entry = model.get(op.path);
        if (entry?.kind === "file") entry.mode = op.mode;
        this.#changed(op.path);
        return;
      }
      case "setxattr":
      case "removexattr": {
        const entry = model.get(op.path);
        if (entry?.kind !== "file") return;
        entry.xattrs ??= new Map();
        if (op.kind === "setxattr") entry.xattrs.set(op.name, Buffer.from(op.value).toString("hex"));
        else entry.xattrs.delete(op.name);
        this.#changed(op.path);
        return;
      }
      case "link": {
        const entry = model.get(op.from);
        if (entry?.kind !== "file") return;
        entry.names ??= new Set([op.from]);
        entry.names.add(op.to);
        entry.everNames ??= new Set([op.from]);
        entry.everNames.add(op.to);
        model.set(op.to, entry);
        this.unsynced.set(op.to, this.#ackCount);
        return;
      }
      case "rename": {
        const entry = model.get(op.from) ?? null;
        const replaced = model.get(op.to);
        if (replaced?.kind === "file") replaced.names?.delete(op.to);
        if (entry?.kind === "file" && entry.names !== undefined) {
          entry.names.delete(op.from);
          entry.names.add(op.to);
        }
        // Its old name too: a split brain's loser that wrote through it keeps it aside there.
        if (entry?.kind === "file") {
          entry.everNames ??= new Set([op.from]);
          entry.everNames.add(op.to);
        }
        model.set(op.from, null);
        model.set(op.to, entry);
        this.unsynced.set(op.from, this.#ackCount);
        this.unsynced.set(op.to, this.#ackCount);
        return;
      }
      case "unlink":
      case "rmdir": {
        const entry = model.get(op.path);
        if (entry?.kind === "file") entry.names?.delete(op.path);
        model.set(op.path, null);
        this.unsynced.set(op.path, this.#ackCount);
        return;
      }
      case "fsync":
        // A whole-tree fsync (syncfs) covers what was acknowledged before it was asked for;
        // what other clients had acknowledged while it ran may not have been on disk yet
        // when it did (the fuzzer found the model trusting a mkdir acknowledged meanwhile).
        if (op.path === null) {
          for (const [path, changedAt] of this.unsynced) if (changedAt <= ackedBefore) this.unsynced.delete(path);
        } else for (const name of this.#namesOf(op.path)) this.unsynced.delete(name);
        return;
    }
  }

  #choose(client: Client): DiskOp | null {
    const prng = this.#prng;
    if (!client.started) {
      client.started = true;
      if (!this.expected.has(client.dir)) return { kind: "mkdir", path: client.dir, mode: 0o755 };
    }
    if (!this.#certain(client.dir)) return null;
    if (client.current === null || !this.#certain(client.current)) {
      client.current = `${client.dir}/f${client.nextName++}`;
      return { kind: "create", path: client.current, mode: 0o644 };
    }
    const path = client.current;
    const entry = this.expected.get(path);
    const size = entry?.kind === "file" ? entry.content.length : 0;
    const roll = prng.int(0, 99);
    if (roll < 50) {
      const length = prng.int(1, this.settings.maxWrite);
      const offset = prng.int(0, this.settings.maxOffset);
      const data = randomBytes(length, prng.u32());
      return { kind: "write", path, offset, data };
    }
    if (roll < 62) return { kind: "fsync", path };
    if (roll < 68) return { kind: "fsync", path: null };
    if (roll < 72) return { kind: "truncate", path, size: prng.int(0, Math.max(1, size)) };
    if (roll < 75) return { kind: "setattr", path, mode: prng.pick([0o600, 0o640, 0o644]) };
    if (roll < 79) {
      const to = `${client.dir}/f${client.nextName++}`;
      client.current = to;
      return { kind: "rename", from: path, to };
    }
    if (roll < 82) {
      client.current = null;
      return { kind: "unlink", path };
    }
    if (roll < 84) return { kind: "symlink", path: `${client.dir}/l${client.nextName++}`, target: `f${prng.int(0, client.nextName)}` };
    if (roll < 86) return { kind: "mkdir", path: `${client.dir}/d${client.nextName++}`, mode: 0o750 };
    if (roll < 88) {
      // A second name, which the client may go on writing through (the first stays).
      const to = `${client.dir}/h${client.nextName++}`;
      if (prng.chance(0.5)) client.current = to;
      return { kind: "link", from: path, to };
    }
    if (roll < 91) return { kind: "setxattr", path, name: prng.pick(xattrNames), value: randomBytes(prng.int(0, 40), prng.u32()) };
    const present = entry?.kind === "file" ? [...(entry.xattrs?.keys() ?? [])] : [];
    if (roll < 92 && present.length > 0) return { kind: "removexattr", path, name: prng.pick(present) };
    this.#readBack(path);
    return { kind: "fsync", path };
  }

  /** Reads a file back from the primary at once and compares it with the model. */
  #readBack(path: string): void {
    const seen = this.#world.read(path);
    this.stats.reads++;
    if (seen === null || !this.checkReads || !this.#certain(path)) return;
    const expected = this.expected.get(path) ?? null;
    if (expected?.kind !== "file") return;
    this.stats.readChecks++;
    // Its bytes: a read does not see modes or attributes.
    const problem = compareEntry(expected, seen.bytes === null ? null : { ...expected, kind: "file", content: seen.bytes });
    if (problem !== null) this.#world.violation("M1", `read back ${path} on ${seen.node}: ${problem}`);
  }
}

/** The attributes the clients set (a namespace a user may set, and one only root may). */
const xattrNames: readonly string[] = ["user.a", "user.b", "trusted.t"];

/** Attributes as one comparable line: `name=hex` sorted, "" for none. */
function xattrsText(xattrs: ReadonlyMap<string, string> | undefined): string {
  return [...(xattrs ?? [])].map(([name, value]) => `${name}=${value}`).sort().join(" ");
}

/** `length` bytes from a xorshift32 seeded by `seed` (one draw from the run's PRNG). */
export function randomBytes(length: number, seed: number): Uint8Array {
  const data = new Uint8Array(length);
  let x = seed | 1;
  for (let index = 0; index < length; index += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[index] = x & 0xff;
    if (index + 1 < length) data[index + 1] = (x >>> 8) & 0xff;
    if (index + 2 < length) data[index + 2] = (x >>> 16) & 0xff;
    if (index + 3 < length) data[index + 3] = (x >>> 24) & 0xff;
  }
  return data;
}


/** null when `actual` is what `expected` says, else what differs. */
export function compareEntry(expected: Expected | null, actual: Expected | null): string | null {
  if (expected === null) return actual === null ? null : `should not exist, but is a ${actual.kind}`;
  if (actual === null) return `should be a ${expected.kind}, but does not exist`;
  if (expected.kind !== actual.kind) return `should be a ${expected.kind}, but is a ${actual.kind}`;
  if (expected.kind === "symlink" && actual.kind === "symlink") return expected.target === actual.target ? null : `links to ${actual.target}, not ${expected.target}`;
  if (expected.kind === "file" && actual.kind === "file") {
    if (expected.mode !== actual.mode) return `mode ${actual.mode.toString(8)}, not ${expected.mode.toString(8)}`;
    const [want, got] = [xattrsText(expected.xattrs), xattrsText(actual.xattrs)];
    if (want !== got) return `extended attributes ${got || "none"}, not ${want || "none"}`;
    if (expected.content.length !== actual.content.length) return `${actual.content.length} bytes, not ${expected.content.length}`;
    for (let index = 0; index < expected.content.length; index++) {
      if (expected.content[index] !== actual.content[index]) return `byte ${index} is ${actual.content[index]}, not ${expected.content[index]}`;
    }
  }
  return null;
}
