// PostgreSQL as the application of a two-node mirror module on this host (mirror-lab.ts):
// the replicated directory is the data directory, start_prim and stop_prim start and stop
// the server as user postgres, a client in the client namespace commits through the VIP
// and records each commit the server acknowledged. Shared by the PostgreSQL mirror tests.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fuseUnavailable } from "../../native/fuse.ts";
import { until } from "./farm-lab.ts";
import { MirrorLab, type MirrorModuleSpec } from "./mirror-lab.ts";
import { requireHost } from "./netns-lab.ts";

export const pgBin = "/usr/lib/postgresql/15/bin";

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

function postgresModule(witness: boolean): MirrorModuleSpec {
  return {
    scripts: { start_prim: startPrim, stop_prim: stopPrim },
    vars: (node) => ({ PG_BIN: pgBin, PG_LOG: join(node.dir, "postgresql.log") }),
    witness,
    // SafeKit's default: a write completes once the secondary received it (an fsync, a
    // commit's, once durable on both); the lane carries both.
    async: "second",
    // The server checked every 2 s on the primary (a timeout counts in whole seconds): a dead server is restarted.
    checks: `<tcp ident="postgresql" when="prim" action="restart"><to addr="127.0.0.1" port="5432" interval="2s" timeout="1s"/></tcp>`,
  };
}

/** Throws, saying what to install, when PostgreSQL 15 or the host's needs are missing. */
export function requirePostgresHost(what: string): void {
  requireHost(what);
  if (!existsSync(join(pgBin, "postgres"))) throw new Error(`${what} needs PostgreSQL 15's server (${pgBin}): apt-get install postgresql-15`);
  try {
    execFileSync("id", ["postgres"], { stdio: "ignore" });
  } catch {
    throw new Error(`${what} needs the postgres user that Debian's postgresql-15 package creates`);
  }
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(`${what}: ${unavailable.message}`);
}

export class PostgresMirror {
  readonly mirror: MirrorLab;
  lastPsqlError = "";
  #writer: ChildProcess | null = null;
  readonly acked: string;

  private constructor(mirror: MirrorLab) {
    this.mirror = mirror;
    this.acked = join(mirror.root, "acked");
  }

  /** Two node services, a new cluster in n1's data directory (n2's empty), not started. */
  static async create(options: { readonly witness?: boolean } = {}): Promise<PostgresMirror> {
    const mirror = MirrorLab.create(postgresModule(options.witness === true));
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    for (const node of mirror.nodes) {
      chownSync(node.dataDir, uid, gid);
      writeFileSync(join(node.dir, "postgresql.log"), "");
      chownSync(join(node.dir, "postgresql.log"), uid, gid);
    }
    const n1 = mirror.nodes[0]!;
    execFileSync("runuser", ["-u", "postgres", "--", join(pgBin, "initdb"), "-D", n1.dataDir, "-A", "trust", "--no-sync"], { stdio: "ignore" });
    appendFileSync(join(n1.dataDir, "postgresql.conf"), "listen_addresses = '*'\nunix_socket_directories = ''\nport = 5432\n");
    appendFileSync(join(n1.dataDir, "pg_hba.conf"), "host all all 198.18.0.0/15 trust\n");
    await mirror.startDaemon(0);
    await mirror.startDaemon(1);
    return new PostgresMirror(mirror);
  }

  /** A mirror begun (below) with the client committing, 20 commits acknowledged already. */
  static async underLoad(options: { readonly witness?: boolean } = {}): Promise<PostgresMirror> {
    const pg = await PostgresMirror.create(options);
    try {
      await pg.begin();
      pg.startWriter();
      await pg.untilAcked(20);
    } catch (error) {
      await pg.destroy();
      throw error;
    }
    return pg;
  }

  /** n1 made primary by the operator (a new mirror), n2 its secondary after a full copy, table t created. */
  async begin(): Promise<void> {
    await this.mirror.begin();
    if (this.psql("create table t (i integer primary key)") === null) throw new Error(`create table: ${this.diagnosis()}`);
  }

  /** psql in the client namespace against the VIP; its output, or null when it failed. */
  psql(sql: string, timeoutMs = 10_000): string | null {
    try {
      return execFileSync("ip", ["netns", "exec", this.mirror.lab.clientNs, join(pgBin, "psql"), "-h", this.mirror.lab.vip, "-U", "postgres", "-d", "postgres", "-Atq", "-c", sql], {
        encoding: "utf8",
        timeout: timeoutMs,
        env: { ...process.env, PGCONNECT_TIMEOUT: "2" },
        stdio: ["ignore", "pipe", "pipe"],
      }).trim();
    } catch (error) {
      this.lastPsqlError = String((error as { stderr?: unknown }).stderr ?? error);
      return null;
    }
  }

  /** Resolves once PostgreSQL answers on the VIP; the time it took. */
  async untilAnswering(timeoutMs: number): Promise<number> {
    const started = Date.now();
    await until(() => this.psql("select 1", 3_000) === "1", timeoutMs, () => `PostgreSQL did not answer on the VIP within ${timeoutMs} ms\n${this.diagnosis()}`, 50);
    return Date.now() - started;
  }

  /** A client committing `insert into t values (i)` for i = 1, 2, ... through the VIP, one
   *  connection each; each commit the server acknowledged goes to the acked file. */
  startWriter(): void {
    const loop = `i=0; while :; do i=$((i + 1)); if PGCONNECT_TIMEOUT=1 ${pgBin}/psql -h ${this.mirror.lab.vip} -U postgres -d postgres -Atq -c "insert into t values ($i)" >/dev/null 2>&1; then echo $i >> ${this.acked}; fi; done`;
    this.#writer = spawn("ip", ["netns", "exec", this.mirror.lab.clientNs, "/bin/sh", "-c", loop], { stdio: "ignore" });
  }

  stopWriter(): void {
    this.#writer?.kill("SIGKILL");
    this.#writer = null;
  }

  ackedIds(): number[] {
    return existsSync(this.acked) ? readFileSync(this.acked, "utf8").split("\n").filter((line) => line !== "").map(Number) : [];
  }

  async untilAcked(count: number, timeoutMs = 60_000): Promise<void> {
    await until(() => this.ackedIds().length >= count, timeoutMs, () => `the client committed ${this.ackedIds().length} rows, not ${count}\n${this.diagnosis()}`);
  }

  /** The acknowledged commits missing from the table as the VIP's server sees it. */
  lostCommits(): number[] {
    const output = this.psql("select i from t");
    if (output === null) throw new Error(`select: ${this.diagnosis()}`);
    const rows = new Set(output.split("\n").filter((line) => line !== "").map(Number));
    return this.ackedIds().filter((id) => !rows.has(id));
  }

  /** What to read when PostgreSQL does not answer: psql's error, each node's scripts and server log. */
  diagnosis(): string {
    const tail = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").slice(-12).join("\n") : "(none)");
    return [`psql: ${this.lastPsqlError}`, ...this.mirror.nodes.map((node) => `${node.name} scripts:\n${tail(node.scriptLog)}\n${node.name} postgresql.log:\n${tail(join(node.dir, "postgresql.log"))}`)].join("\n");
  }

  async destroy(): Promise<void> {
    this.stopWriter();
    await this.mirror.destroy();
  }
}
