// Several replicated directories in one mirror module (SafeKit allows several `<replicated>`
// in an `<rfs>`). The core works on one tree; with more than one directory that tree is a
// virtual root whose entries are the directories, each named by `volumeNameOf`: its
// position in the `<rfs>` and its last segment (`/var/lib/pgsql` second: `2-pgsql`), the
// same on both nodes as long as both list the same directories in the same order (one
// userconfig.xml), even where the paths differ. A change in one directory is
// `2-pgsql/base/1` to the core, its marks, its metadata and the stream. With one directory
// there is no virtual root: paths are relative to it, as they always were.
//
// `composeDisks` is the disk port of such a tree over one port per directory. The virtual
// root cannot be changed: it is a directory (mode 0755) whose children are the volumes;
// a volume cannot be removed nor replaced by something else; an operation naming two
// volumes (which no mount can issue: the kernel answers EXDEV across file systems) is
// refused with EINVAL. The metadata is the first volume's port's. Calls complete in the
// order they were issued, as the port's contract says, whichever volumes they went to (a
// call answered early waits for the ones before it); an answer the composite gives itself
// is delivered through `defer`, never inside the call. A pure module.

import type { DiskPort } from "../ports.ts";
import { isAttributeOp, type DiskError, type DiskOp, type DiskResult, type PathSnapshot } from "./disk-ops.ts";

/** One path segment naming directory `dir` (absolute), `index`th of its module's (from 0). */
export function volumeNameOf(dir: string, index: number): string {
  return `${index + 1}-${dir.slice(dir.lastIndexOf("/") + 1)}`;
}

/** `path` of volume `name` in the module's tree ("" is the volume's own root). */
/** Whether two layouts (MirrorConfig.layout: the directories' names in order; empty: one
 *  directory) are the same. */
export function sameLayout(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, index) => b[index] === name);
}

export function describeLayout(layout: readonly string[]): string {
  return layout.length === 0 ? "one directory" : layout.join(", ");
}

export function inVolume(name: string, path: string): string {
  return path === "" ? name : `${name}/${path}`;
}

/** The operation of one volume's mount as the module's tree names it. */
export function opInVolume(name: string, op: DiskOp): DiskOp {
  switch (op.kind) {
    case "rename":
    case "link":
      return { ...op, from: inVolume(name, op.from), to: inVolume(name, op.to) };
    case "fsync":
      return op.path === null ? op : { ...op, path: inVolume(name, op.path) };
    default:
      return { ...op, path: inVolume(name, op.path) };
  }
}

export interface Volume<Meta> {
  readonly name: string;
  readonly disk: DiskPort<Meta>;
}

/** The mode the virtual root reports (a resync installs it on the peer's, which ignores it). */
const rootMode = 0o755;

/** `defer` runs a function soon, outside the current call (the driver's scheduling). */
export function composeDisks<Meta>(volumes: readonly Volume<Meta>[], defer: (run: () => void) => void): DiskPort<Meta> {
  if (volumes.length === 0) throw new Error("composeDisks needs one volume at least");
  // Calls in the order issued; each answered once its result is in and all before it are.
  const calls: { answered: boolean; deliver: () => void }[] = [];
  const flush = (): void => {
    while (calls.length > 0 && calls[0]!.answered) calls.shift()!.deliver();
  };
  /** A call issued now; the callback it returns takes its result. */
  const issue = <R>(done: (result: R) => void): ((result: R) => void) => {
    const call = { answered: false, deliver: () => {} };
    calls.push(call);
    return (result) => {
      call.answered = true;
      call.deliver = () => done(result);
      flush();
    };
  };
  /** An answer the composite gives itself. */
  const answer = <R>(done: (result: R) => void, result: R): void => {
    const settle = issue(done);
    defer(() => settle(result));
  };
  const byName = new Map(volumes.map((volume) => [volume.name, volume.disk]));
  if (byName.size !== volumes.length) throw new Error(`two replicated directories have the same name: ${volumes.map((volume) => volume.name).join(", ")}`);
  const children = volumes.map((volume) => volume.name).sort();
  const first = volumes[0]!.disk;

  /** The volume of a path and the path within it; "root" for the virtual root, "unknown"
   *  for a name that is no volume. */
  const split = (path: string): { readonly disk: DiskPort<Meta>; readonly name: string; readonly rest: string } | "root" | "unknown" => {
    if (path === "") return "root";
    const slash = path.indexOf("/");
    const name = slash < 0 ? path : path.slice(0, slash);
    const disk = byName.get(name);
    return disk === undefined ? "unknown" : { disk, name, rest: slash < 0 ? "" : path.slice(slash + 1) };
  };

  return {
    apply(op: DiskOp, done: (result: DiskResult) => void): void {
      if (op.kind === "fsync" && op.path === null) {
        const settle = issue(done);
        let left = volumes.length;
        let error: DiskResult = null;
        for (const volume of volumes) {
          volume.disk.apply(op, (result) => {
            error ??= result;
            left -= 1;
            if (left === 0) settle(error);
          });
        }
        return;
      }
      const paths = op.kind === "rename" || op.kind === "link" ? [op.from, op.to] : [op.kind === "fsync" ? op.path! : op.path];
      const parts = paths.map(split);
      const target = parts[0]!;
      if (target === "unknown") return answer(done, "ENOENT");
      if (target === "root") return answer(done, op.kind === "fsync" ? null : op.kind === "link" ? "EPERM" : "EINVAL");
      // A second name in another volume: another file system, as the kernel would say.
      if (op.kind === "link" && typeof parts[1] !== "string" && parts[1]!.name !== target.name) return answer(done, "EXDEV");
      if (parts.some((part) => typeof part === "string" || part.name !== target.name)) return answer(done, "EINVAL");
      const rests = parts.map((part) => (part as { rest: string }).rest);
      // The volume's own root: it can be changed (mode, owner), never removed nor replaced.
      if (target.rest === "" && !isAttributeOp(op) && op.kind !== "fsync") return answer(done, op.kind === "mkdir" ? "EEXIST" : op.kind === "link" ? "EPERM" : "EINVAL");
      if (op.kind === "rename" && rests[1] === "") return answer(done, "EINVAL");
      target.disk.apply(withPaths(op, rests), issue(done));
    },

    read(path: string, blocks: readonly number[] | "all", blockSize: number, done: (result: PathSnapshot | DiskError) => void): void {
      const part = split(path);
      if (part === "root") return answer<PathSnapshot | DiskError>(done, { kind: "dir", mode: rootMode, children });
      if (part === "unknown") return answer<PathSnapshot | DiskError>(done, { kind: "absent" });
      const settle = issue(done);
      // A file's other names are in its own volume: named as the module's tree names them.
      part.disk.read(part.rest, blocks, blockSize, (result) => {
        if (typeof result === "string" || result.kind !== "file" || result.links === undefined) return settle(result);
        settle({ ...result, links: result.links.map((each) => `${part.name}/${each}`) });
      });
    },

    install(path: string, snapshot: PathSnapshot, blockSize: number, done: (result: DiskResult) => void): void {
      const part = split(path);
      if (part === "root") return answer(done, snapshot.kind === "dir" ? null : "EINVAL");
      // Nothing outside the volumes exists, so there is nothing to remove there.
      if (part === "unknown") return answer(done, snapshot.kind === "absent" ? null : "EINVAL");
      if (part.rest === "" && snapshot.kind !== "dir") return answer(done, "EINVAL");
      if (snapshot.kind !== "file" || snapshot.links === undefined) return part.disk.install(part.rest, snapshot, blockSize, issue(done));
      const links = snapshot.links.flatMap((each) => (each.startsWith(`${part.name}/`) ? [each.slice(part.name.length + 1)] : []));
      part.disk.install(part.rest, { ...snapshot, links }, blockSize, issue(done));
    },

    preserve(paths: readonly string[], label: string, done: (result: { readonly place: string } | DiskError) => void): void {
      const groups = new Map<string, { disk: DiskPort<Meta>; rests: string[] }>();
      for (const path of paths) {
        const part = split(path);
        if (part === "unknown") continue;
        if (part === "root") {
          for (const volume of volumes) groups.set(volume.name, { disk: volume.disk, rests: [""] });
          break;
        }
        const group = groups.get(part.name) ?? { disk: part.disk, rests: [] };
        group.rests.push(part.rest);
        groups.set(part.name, group);
      }
      if (groups.size === 0) return answer(done, { place: "(nothing to keep)" });
      const settle = issue(done);
      const places: string[] = [];
      let error: DiskError | null = null;
      let left = groups.size;
      for (const [name, group] of groups) {
        group.disk.preserve(group.rests, `${label}-${name}`, (result) => {
          if (typeof result === "string") error ??= result;
          else places.push(result.place);
          left -= 1;
          if (left === 0) settle(error ?? { place: places.sort().join(", ") });
        });
      }
    },

    persistMeta: (meta, done) => first.persistMeta(meta, issue(done)),
    loadMeta: (done) => first.loadMeta(issue(done)),
  };
}

function withPaths(op: DiskOp, paths: readonly string[]): DiskOp {
  switch (op.kind) {
    case "rename":
    case "link":
      return { ...op, from: paths[0]!, to: paths[1]! };
    case "fsync":
      return { ...op, path: paths[0]! };
    default:
      return { ...op, path: paths[0]! };
  }
}
