// PostgreSQL in a two-node mirror module on this host (mirror-lab.ts: two node services in
// network namespaces, a client namespace): the data directory is the replicated directory,
// start_prim and stop_prim start and stop the server, clients reach it on the VIP. A client
// commits transactions through the VIP and records each commit the server acknowledged;
// the primary node loses power (every process of its namespace killed at once) at a random
// moment; the secondary takes over, and every acknowledged commit is there. The old primary
// comes back as secondary with an incremental resync (its counters show far fewer bytes
// than the data directory holds), the roles are swapped back, the server stopped, and the
// two data directories compared byte for byte.
//
// Needs root, `ip`, nsenter, nftables, /dev/fuse, both native addons and PostgreSQL 15's
// server (Debian's postgresql-15: .ci/run installs it); it FAILS, saying which is missing.

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { appendFileSync, chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuseUnavailable } from "../../native/fuse.ts";
import { until } from "./farm-lab.ts";
import { MirrorLab, mirrorModule, treeOf, type MirrorModuleSpec } from "./mirror-lab.ts";
import { requireHost } from "./netns-lab.ts";

const what = "the PostgreSQL mirror test (test/host/mirror-postgres.test.ts)";
const pgBin = "/usr/lib/postgresql/15/bin";
/** From the primary's power cut to PostgreSQL answering on the VIP. */
const failoverBoundMs = 20_000;

const startPrim = `#!/bin/sh
# start_prim: PostgreSQL on the replicated data directory, as user postgres.
set -eu
echo "start_prim $*" >> "$SCRIPT_LOG"
# A postmaster.pid that came from the other node names one of its processes, not ours.
if ! pgrep -f "postgres -D $DATA_DIR" >/dev/null; then rm -f "$DATA_DIR/postmaster.pid"; fi
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$PG_LOG" -w -t 120 start
`;

const stopPrim = `#!/bin/sh
# stop_prim: a fast shutdown (open transactions rolled back, everything committed on disk).
set -u
echo "stop_prim $*" >> "$SCRIPT_LOG"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast -w -t 60 stop || true
`;

const postgresModule: MirrorModuleSpec = {
  scripts: { start_prim: startPrim, stop_prim: stopPrim },
  vars: (node) => ({ PG_BIN: pgBin, PG_LOG: join(node.dir, "postgresql.log") }),
};

let mirror: MirrorLab;
let writer: ChildProcess | null = null;

function requirePostgres(): void {
  if (!existsSync(join(pgBin, "postgres"))) throw new Error(`${what} needs PostgreSQL 15's server (${pgBin}): apt-get install postgresql-15`);
  try {
    execFileSync("id", ["postgres"], { stdio: "ignore" });
  } catch {
    throw new Error(`${what} needs the postgres user that Debian's postgresql-15 package creates`);
  }
}

let lastPsqlError = "";

/** psql in the client namespace against the VIP; its output, or null when it failed
 *  (lastPsqlError then says why). */
function psql(sql: string, timeoutMs = 10_000): string | null {
  try {
    return execFileSync("ip", ["netns", "exec", mirror.lab.clientNs, join(pgBin, "psql"), "-h", mirror.lab.vip, "-U", "postgres", "-d", "postgres", "-Atq", "-c", sql], {
      encoding: "utf8",
      timeout: timeoutMs,
      env: { ...process.env, PGCONNECT_TIMEOUT: "2" },
      stdio: ["ignore", "pipe", "pipe"],
    }).trim();
  } catch (error) {
    lastPsqlError = String((error as { stderr?: unknown }).stderr ?? error);
    return null;
  }
}

/** What to read when PostgreSQL does not answer: psql's error, each node's scripts and server log. */
function diagnosis(): string {
  const tail = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").slice(-12).join("\n") : "(none)");
  return [`psql: ${lastPsqlError}`, ...mirror.nodes.map((node) => `${node.name} scripts:\n${tail(node.scriptLog)}\n${node.name} postgresql.log:\n${tail(join(node.dir, "postgresql.log"))}`)].join("\n");
}

/** A client in the client namespace committing `insert into t values (i)` for i = 1, 2, ...
 *  through the VIP, one connection each; each commit the server acknowledged goes to `acked`. */
function startWriter(acked: string): ChildProcess {
  const loop = `i=0; while :; do i=$((i + 1)); if PGCONNECT_TIMEOUT=1 ${pgBin}/psql -h ${mirror.lab.vip} -U postgres -d postgres -Atq -c "insert into t values ($i)" >/dev/null 2>&1; then echo $i >> ${acked}; fi; done`;
  return spawn("ip", ["netns", "exec", mirror.lab.clientNs, "/bin/sh", "-c", loop], { stdio: "ignore" });
}

function ackedIds(file: string): number[] {
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((line) => line !== "").map(Number) : [];
}

beforeAll(async () => {
  requireHost(what);
  requirePostgres();
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(`${what}: ${unavailable.message}`);
  mirror = MirrorLab.create(postgresModule);
  // A new cluster on n1; n2's directory stays empty: the first resync copies it.
  const [n1, n2] = mirror.nodes;
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  for (const node of [n1!, n2!]) {
    chownSync(node.dataDir, uid, gid);
    writeFileSync(join(node.dir, "postgresql.log"), "");
    chownSync(join(node.dir, "postgresql.log"), uid, gid);
  }
  execFileSync("runuser", ["-u", "postgres", "--", join(pgBin, "initdb"), "-D", n1!.dataDir, "-A", "trust", "--no-sync"], { stdio: "ignore" });
  appendFileSync(join(n1!.dataDir, "postgresql.conf"), "listen_addresses = '*'\nunix_socket_directories = ''\nport = 5432\n");
  appendFileSync(join(n1!.dataDir, "pg_hba.conf"), "host all all 198.18.0.0/15 trust\n");
  await mirror.startDaemon(0);
  await mirror.startDaemon(1);
}, 120_000);

afterAll(async () => {
  writer?.kill("SIGKILL");
  await mirror?.destroy();
}, 120_000);

describe("PostgreSQL in a mirror module", () => {
  it("runs on the primary behind the VIP, its data directory copied whole to the secondary", async () => {
    expect((await mirror.tandem(0, ["start", "-m", mirrorModule])).code).toBe(0);
    await until(async () => (await mirror.view(0))?.mirror?.why.includes("run prim") === true, 10_000, () => "n1 did not wait for the operator");
    expect((await mirror.tandem(0, ["prim", "-m", mirrorModule])).code).toBe(0);
    await mirror.untilRoles(["ALONE", null], 60_000);
    expect((await mirror.tandem(1, ["start", "-m", mirrorModule])).code).toBe(0);
    await mirror.untilRoles(["PRIM", "SECOND"], 120_000);
    expect(psql("create table t (i integer primary key)"), diagnosis()).not.toBeNull();
    expect(psql("select count(*) from t")).toBe("0");
  }, 240_000);

  it("loses no acknowledged commit when the primary loses power under load", async () => {
    const acked = join(mirror.root, "acked");
    writer = startWriter(acked);
    await until(() => ackedIds(acked).length >= 20, 60_000, () => `the client committed ${ackedIds(acked).length} rows in 60 s`);
    // A random moment within the next second.
    await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 1_000)));
    const cutAt = Date.now();
    await mirror.powerOff(0);
    await until(() => psql("select 1", 3_000) === "1", failoverBoundMs, () => `PostgreSQL did not answer on the VIP within ${failoverBoundMs} ms of the power cut`, 50);
    const failoverMs = Date.now() - cutAt;
    const before = ackedIds(acked).length;
    await until(() => ackedIds(acked).length >= before + 10, 60_000, () => "the client could not commit on the new primary");
    writer.kill("SIGKILL");
    writer = null;
    const rows = new Set((psql("select i from t") ?? "").split("\n").filter((line) => line !== "").map(Number));
    const lost = ackedIds(acked).filter((id) => !rows.has(id));
    expect(lost, "acknowledged commits missing after the failover").toEqual([]);
    console.log(`failover: power cut of n1 -> PostgreSQL answering on the VIP on n2 in ${failoverMs} ms; ${ackedIds(acked).length} commits acknowledged, all present`);
    expect((await mirror.view(1))!.state).toBe("ALONE");
  }, 180_000);

  it("brings the old primary back with an incremental resync", async () => {
    await mirror.startDaemon(0);
    const [, primary] = await mirror.untilRoles(["SECOND", "PRIM"], 120_000);
    const stats = primary!.mirror!.stats;
    const dataBytes = Object.values(treeOf(mirror.nodes[1]!.dataDir)).reduce((sum, entry) => sum + (entry.startsWith("file") ? Number(entry.split(" ")[3]) : 0), 0);
    console.log(`resync after the power cut: ${stats.resyncBlockBytes} bytes in ${stats.resyncPaths} paths sent, the data directory holds ${dataBytes} bytes`);
    expect(stats.fullResyncs).toBe(0);
    expect(stats.resyncs).toBe(1);
    expect(stats.resyncBlockBytes).toBeLessThan(dataBytes / 2);
  }, 180_000);

  it("swaps back; the database stopped, both data directories are identical", async () => {
    const swap = await mirror.tandem(1, ["swap", "-m", mirrorModule]);
    expect(swap.code, swap.output).toBe(0);
    await mirror.untilRoles(["PRIM", "SECOND"], 120_000);
    await until(() => psql("select 1", 3_000) === "1", 30_000, () => "PostgreSQL did not answer on the VIP after the swap");
    const count = Number(psql("select count(*) from t"));
    expect(psql("insert into t values (-1)")).not.toBeNull();
    expect(Number(psql("select count(*) from t"))).toBe(count + 1);
    // The database stopped on the primary (its shutdown checkpoint replicated like any write), the module still running.
    const dataDir = mirror.nodes[0]!.dataDir;
    const stop = await mirror.app(0, `runuser -u postgres -- ${pgBin}/pg_ctl -D ${dataDir} -m fast -w -t 60 stop`);
    expect(stop.code, stop.output).toBe(0);
    expect(treeOf(mirror.nodes[1]!.dataDir)).toEqual(treeOf(dataDir));
    for (const index of [1, 0]) expect((await mirror.tandem(index, ["stop", "-m", mirrorModule, "--wait"])).code).toBe(0);
  }, 180_000);
});
