// PostgreSQL's failover in a mirror module on the Docker lab (issue 8's failover figure),
// and the incremental resync after each: two node containers replicating PostgreSQL 15's
// data directory (lab/lab-mirror.ts), a client committing through the VIP all along.
//
//   node bench/mirror-lab-bench.ts [--cycles N] [--quick]   (default 20 cycles; quick 5)
//
// Each cycle, at a random moment 0.5–1.5 s into it, the primary's container is killed
// (power loss). Measured from the kill:
//   takeover   the survivor's service says ALONE (it saw the loss, asked the witness-less
//              checker, started a new generation): tandem's part;
//   answering  PostgreSQL accepts a connection on the VIP (the client container opens a
//              new connection every 20 ms and waits for ReadyForQuery): the takeover plus
//              PostgreSQL's start and crash recovery on the survivor.
// Then the killed node boots and is resynced: bytes the new primary sent (its counters)
// and the time from the boot to both in sync. The next cycle kills the new primary. At
// the end the lab's checks run (lab-mirror.ts finish): every acknowledged commit present,
// data directories byte for byte equal. Needs root, dockerd, /dev/fuse; takes the lab's
// lock and removes the lab at the end.

import { parseArgs } from "node:util";
import { dockerClient, ensureImages } from "../lab/images.ts";
import { Lab } from "../lab/lab.ts";
import { LabMirrorCluster } from "../lab/lab-mirror.ts";
import { inSyncWith, roleOf, type MirrorScenario } from "../scenarios/mirror-cluster.ts";
import { lockLab } from "../test/lab/lab-lock.ts";
import { percentile } from "./farm-bench.ts";

const { values } = parseArgs({ options: { cycles: { type: "string" }, quick: { type: "boolean", default: false } } });
const cycles = Number(values.cycles ?? (values.quick ? 5 : 20));
if (!Number.isInteger(cycles) || cycles < 1) throw new Error(`--cycles: a positive integer, not ${values.cycles}`);

const scenario: MirrorScenario = { name: "failover-bench", summary: "bench/mirror-lab-bench.ts", run: async () => {} };
const say = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Cycle {
  readonly killed: string;
  readonly takeoverMs: number;
  readonly answeringMs: number;
  readonly resyncBytes: number;
  readonly resyncMs: number;
}

async function main(): Promise<void> {
  const docker = dockerClient();
  const lab = new Lab({ docker, progress: (line) => say(`lab: ${line}`) });
  await lab.requireDocker();
  const release = await lockLab("bench/mirror-lab-bench.ts");
  try {
    await ensureImages(docker, (line) => say(line));
    const cluster = await LabMirrorCluster.create(scenario, { lab });
    const results: Cycle[] = [];
    try {
      await cluster.begin();
      await cluster.startWrites();
      let primary = "n1";
      for (let cycle = 1; cycle <= cycles; cycle++) {
        const survivor = primary === "n1" ? "n2" : "n1";
        await sleep(500 + Math.random() * 1_000);
        const killedAt = Date.now();
        await cluster.kill(primary);
        const answering = cluster.firstAnswer(60_000);
        await cluster.waitFor(`${survivor} ALONE`, (views) => roleOf(views, survivor) === "ALONE", 30_000);
        const takeoverMs = Date.now() - killedAt;
        const answeringMs = (await answering) - killedAt;
        const sentBefore = await cluster.resyncBytes(survivor);
        const bootedAt = Date.now();
        await cluster.boot(primary);
        await cluster.waitFor(`${survivor} PRIM, ${primary} SECOND`, inSyncWith(survivor), 60_000);
        const resyncMs = Date.now() - bootedAt;
        const resyncBytes = (await cluster.resyncBytes(survivor)) - sentBefore;
        results.push({ killed: primary, takeoverMs, answeringMs, resyncBytes, resyncMs });
        say(`cycle ${cycle}/${cycles}: ${primary} killed; takeover ${takeoverMs} ms, PostgreSQL answering on the VIP ${answeringMs} ms; resync ${resyncBytes} bytes in ${resyncMs} ms`);
        primary = survivor;
      }
      const writes = await cluster.stopWrites();
      await cluster.finish();
      const column = (pick: (cycle: Cycle) => number) => {
        const values = results.map(pick);
        return `median ${percentile(values, 0.5).toFixed(0)}, p99 ${percentile(values, 0.99).toFixed(0)}, max ${Math.max(...values).toFixed(0)}`;
      };
      console.log(`Mirror module on the Docker lab: PostgreSQL 15, ${cycles} power losses of the primary under commits (${new Date().toISOString().slice(0, 10)})`);
      console.log(`  takeover (survivor ALONE), ms:                       ${column((each) => each.takeoverMs)}`);
      console.log(`  kill -> PostgreSQL answering on the VIP, ms:          ${column((each) => each.answeringMs)}`);
      console.log(`  PostgreSQL's own start and recovery (difference), ms: ${column((each) => each.answeringMs - each.takeoverMs)}`);
      console.log(`  resync after the node's return, bytes:                ${column((each) => each.resyncBytes)}`);
      console.log(`  resync, boot -> in sync, ms:                          ${column((each) => each.resyncMs)}`);
      console.log(`  commits: ${writes.acked} acknowledged, all present after the last cycle; ${writes.failed} failed (not acknowledged); longest gap ${writes.longestGapMs.toFixed(0)} ms`);
    } finally {
      await cluster.close();
    }
  } finally {
    await lab.down().catch(() => {});
    release();
  }
}

await main();
