// PostgreSQL in a two-node mirror module on this host (postgres-mirror.ts over
// mirror-lab.ts: two node services in network namespaces, a client namespace): the data
// directory is the replicated directory, start_prim and stop_prim start and stop the
// server, a client commits through the VIP and records each commit the server
// acknowledged. In every case below, no acknowledged commit is missing afterwards:
//
// - the primary loses power (every process of its namespace killed at once) at a random
//   moment: the secondary takes over; the old primary comes back with an incremental
//   resync; swap back; the database stopped, both data directories byte for byte equal;
// - the secondary loses power: the primary goes on alone; the secondary comes back;
// - both lose power, primary first and secondary first: whichever went on last holds the
//   newest data and becomes primary when both are back;
// - a partition with the witness configured, the secondary cut from the witness too: the
//   secondary must not take over (one primary only); healed, it follows again;
// - the server killed on the primary: its tcp checker restarts it in place;
// - a partition without a witness: a split brain (both primaries, as documented); healed,
//   one side wins and the other's changed files are kept aside (commits acknowledged by
//   the losing side are there, not in the database: the reason to configure a witness).
//
// Needs root, `ip`, nsenter, nft, /dev/fuse, both native addons and PostgreSQL 15's server
// (Debian's postgresql-15: .ci/run installs it); it FAILS, saying which is missing.

import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { until } from "./farm-lab.ts";
import { mirrorModule, treeOf } from "./mirror-lab.ts";
import { pgBin, PostgresMirror, requirePostgresHost } from "./postgres-mirror.ts";

const what = "the PostgreSQL mirror test (test/host/mirror-postgres.test.ts)";
/** From a power cut to PostgreSQL answering on the VIP again. */
const failoverBoundMs = 20_000;

beforeAll(() => requirePostgresHost(what));

function dataBytes(dir: string): number {
  return Object.values(treeOf(dir)).reduce((sum, entry) => sum + (entry.startsWith("file") ? Number(entry.split(" ")[3]) : 0), 0);
}

describe("PostgreSQL in a mirror module: the primary loses power", () => {
  let pg: PostgresMirror;
  beforeAll(async () => {
    pg = await PostgresMirror.create();
  }, 120_000);
  afterAll(async () => {
    await pg?.destroy();
  }, 120_000);

  it("runs on the primary behind the VIP, its data directory copied whole to the secondary", async () => {
    await pg.begin();
    expect(pg.psql("select count(*) from t"), pg.diagnosis()).toBe("0");
  }, 240_000);

  it("loses no acknowledged commit when the primary loses power under load", async () => {
    pg.startWriter();
    await pg.untilAcked(20);
    // With async="second" too, the commits' writes and fsyncs take the lane.
    await until(async () => ((await pg.mirror.view(0))?.mirror?.lane.completed ?? 0) > 0, 10_000, () => "the lane took none of PostgreSQL's writes");
    // A random moment within the next second.
    await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 1_000)));
    const cutAt = Date.now();
    await pg.mirror.powerOff(0);
    await pg.untilAnswering(failoverBoundMs);
    const failoverMs = Date.now() - cutAt;
    await pg.untilAcked(pg.ackedIds().length + 10);
    pg.stopWriter();
    expect(pg.lostCommits(), "acknowledged commits missing after the failover").toEqual([]);
    console.log(`failover: power cut of n1 -> PostgreSQL answering on the VIP on n2 in ${failoverMs} ms; ${pg.ackedIds().length} commits acknowledged, all present`);
    expect((await pg.mirror.view(1))!.state).toBe("ALONE");
  }, 180_000);

  it("brings the old primary back with an incremental resync", async () => {
    await pg.mirror.startDaemon(0);
    const [, primary] = await pg.mirror.untilRoles(["SECOND", "PRIM"], 120_000);
    const stats = primary!.mirror!.stats;
    const total = dataBytes(pg.mirror.nodes[1]!.dataDir);
    console.log(`resync after the power cut: ${stats.resyncBlockBytes} bytes in ${stats.resyncPaths} paths sent, the data directory holds ${total} bytes`);
    expect(stats.fullResyncs).toBe(0);
    expect(stats.resyncs).toBe(1);
    expect(stats.resyncBlockBytes).toBeLessThan(total / 2);
  }, 180_000);

  it("swaps back; the database stopped, both data directories are identical", async () => {
    const swap = await pg.mirror.tandem(1, ["swap", "-m", mirrorModule]);
    expect(swap.code, swap.output).toBe(0);
    await pg.mirror.untilRoles(["PRIM", "SECOND"], 120_000);
    await pg.untilAnswering(30_000);
    const count = Number(pg.psql("select count(*) from t"));
    expect(pg.psql("insert into t values (-1)")).not.toBeNull();
    expect(Number(pg.psql("select count(*) from t"))).toBe(count + 1);
    // The database stopped on the primary (its shutdown checkpoint replicated like any write), the module still running.
    const dataDir = pg.mirror.nodes[0]!.dataDir;
    const stop = await pg.mirror.app(0, `runuser -u postgres -- ${pgBin}/pg_ctl -D ${dataDir} -m fast -w -t 60 stop`);
    expect(stop.code, stop.output).toBe(0);
    expect(treeOf(pg.mirror.nodes[1]!.dataDir)).toEqual(treeOf(dataDir));
    for (const index of [1, 0]) expect((await pg.mirror.tandem(index, ["stop", "-m", mirrorModule, "--wait"])).code).toBe(0);
  }, 180_000);
});

describe("PostgreSQL in a mirror module: other failures", () => {
  let pg: PostgresMirror | null = null;
  afterEach(async () => {
    await pg?.destroy();
    pg = null;
  }, 120_000);

  it("the secondary loses power: the primary goes on alone, the secondary comes back and follows", async () => {
    pg = await PostgresMirror.underLoad();
    await pg.mirror.powerOff(1);
    await pg.mirror.untilRoles(["ALONE", null], 10_000);
    await pg.untilAcked(pg.ackedIds().length + 20);
    await pg.mirror.startDaemon(1);
    const [primary] = await pg.mirror.untilRoles(["PRIM", "SECOND"], 120_000);
    expect(primary!.mirror!.stats.fullResyncs).toBe(1); // the first copy only
    await pg.untilAcked(pg.ackedIds().length + 10);
    pg.stopWriter();
    expect(pg.lostCommits()).toEqual([]);
  }, 300_000);

  for (const first of [0, 1] as const) {
    const order = first === 0 ? "primary first" : "secondary first";
    it(`both nodes lose power, ${order}: the node that went on last becomes primary, nothing acknowledged lost`, async () => {
      pg = await PostgresMirror.underLoad();
      const second = first === 0 ? 1 : 0;
      await pg.mirror.powerOff(first);
      // The survivor goes on alone and takes commits.
      await pg.mirror.untilRoles(second === 0 ? ["ALONE", null] : [null, "ALONE"], failoverBoundMs);
      await pg.untilAnswering(failoverBoundMs);
      await pg.untilAcked(pg.ackedIds().length + 10);
      await pg.mirror.powerOff(second);
      pg.stopWriter();
      // Both back, the one that died first started first: it must not become primary.
      await pg.mirror.startDaemon(first);
      await pg.mirror.startDaemon(second);
      await pg.mirror.untilRoles(second === 0 ? ["PRIM", "SECOND"] : ["SECOND", "PRIM"], 120_000);
      await pg.untilAnswering(failoverBoundMs);
      expect(pg.lostCommits()).toEqual([]);
    }, 300_000);
  }

  it("the server dies on the primary: its checker restarts it there, nothing acknowledged lost", async () => {
    pg = await PostgresMirror.underLoad();
    const dataDir = pg.mirror.nodes[0]!.dataDir;
    // ([p]: the pattern must not match the shell that runs pkill.)
    expect((await pg.mirror.app(0, `pkill -9 -f "[p]ostgres -D ${dataDir}"`)).code).toBe(0);
    await until(() => pg!.mirror.scriptRuns(0).filter((line) => line.startsWith("start_prim")).length >= 2, 20_000, () => `start_prim did not run again: ${pg!.mirror.scriptRuns(0).join(", ")}`);
    await pg.untilAnswering(failoverBoundMs);
    await pg.untilAcked(pg.ackedIds().length + 10);
    pg.stopWriter();
    expect((await pg.mirror.view(0))!.state, "still the primary: restarted in place").toBe("PRIM");
    expect(pg.lostCommits()).toEqual([]);
  }, 300_000);

  it("a partition with the witness, the secondary cut from it too: no second primary; healed, it follows", async () => {
    pg = await PostgresMirror.underLoad({ witness: true });
    pg.mirror.cutWitness(1);
    pg.mirror.partition();
    // The primary reaches the witness and goes on alone; the secondary must wait.
    await pg.mirror.untilRoles(["ALONE", null], 10_000);
    await pg.untilAcked(pg.ackedIds().length + 10);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const cut = await pg.mirror.view(1);
    expect(cut!.state, "the secondary cut from its peer and the witness").not.toMatch(/PRIM|ALONE/);
    expect(pg.mirror.hasVip(1)).toBe(false);
    pg.mirror.heal();
    pg.mirror.healWitness(1);
    await pg.mirror.untilRoles(["PRIM", "SECOND"], 120_000);
    await pg.untilAcked(pg.ackedIds().length + 10);
    pg.stopWriter();
    expect(pg.lostCommits()).toEqual([]);
  }, 300_000);

  it("a partition without the witness is a split brain: two primaries; healed, one side wins and the other's files are kept aside", async () => {
    pg = await PostgresMirror.underLoad();
    pg.mirror.partition();
    // Nothing tells the secondary its peer is alive: it takes over too (docs/mirror.md).
    await pg.mirror.untilRoles(["ALONE", "ALONE"], 20_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    pg.stopWriter();
    pg.mirror.heal();
    let roles: string[] = [];
    await until(
      async () => {
        const views = await Promise.all([pg!.mirror.view(0), pg!.mirror.view(1)]);
        roles = views.map((view) => `${view?.state} ${view?.readiness}`);
        return roles.includes("PRIM Ready") && roles.includes("SECOND Ready");
      },
      120_000,
      () => `no primary and secondary after the partition healed: ${roles.join(", ")}`,
    );
    const loser = roles[0] === "SECOND Ready" ? 0 : 1;
    const preserved = join(pg.mirror.nodes[loser]!.stateDir, "modules", mirrorModule, "mirror", "preserved");
    const splitLog = pg.mirror.daemons.map((daemon) => daemon?.output.split("\n").filter((line) => /splitbrain|preserv|attach|new_generation/.test(line)).join("\n")).join("\n----\n");
    expect(readdirSync(preserved).length, `the losing side's changes kept under ${preserved}\n${splitLog}`).toBeGreaterThan(0);
    await pg.untilAnswering(30_000);
  }, 300_000);
});
