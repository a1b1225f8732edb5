// The mirror scenarios of scenarios/mirror-scenarios.ts, unchanged, on the Docker lab: two
// node services in containers replicating PostgreSQL 15's data directory through the real
// replicator, a client committing through the VIP, in real time (lab/lab-mirror.ts). Each
// scenario starts from a fresh lab (the database made by the first primary's start_prim
// and copied whole to the secondary, about 10 s) and ends with the lab's checks: both
// nodes converge, every acknowledged commit is in the table (after a split brain without
// witness: the losing side kept its files aside), the data directories byte for byte equal
// with the database stopped.
//
// Deadlines: each wait gets the simulator's bound plus 15 s for the real application (see
// lab-mirror.ts); every wait is printed against its bound. Not run here:
// - mirror-app-crash-loop: it kills the application four times in two seconds and
//   expects each death seen at once (the simulator's errd); the lab's PostgreSQL is watched
//   by a tcp checker every 5 s (test/host/mirror-postgres.test.ts checks one restart);
// - disk-full-secondary, split-brain-preserve-fails: the lab has no disk faults; the test
//   checks that it says so (test/host/mirror-errors.test.ts fills a real disk instead).
//
// Needs a running Docker engine (dockerd), root and /dev/fuse: it FAILS, saying how to
// start dockerd, rather than skip.

import { afterAll, describe, expect, it } from "vitest";
import { dockerClient, ensureImages, requireDocker } from "../../lab/images.ts";
import { Lab } from "../../lab/lab.ts";
import { runMirrorScenarioOnLab, type LabMirrorOutcome } from "../../lab/lab-mirror.ts";
import type { MirrorScenario } from "../../scenarios/mirror-cluster.ts";
import { mirrorScenarios } from "../../scenarios/mirror-scenarios.ts";
import { fuseUnavailable } from "../../native/fuse.ts";
import { lockLab, setUpOrFailEach } from "./lab-lock.ts";

const docker = dockerClient();
const lab = new Lab({ docker });
const progress: string[] = [];
const results: { scenario: string; outcome: LabMirrorOutcome }[] = [];
let releaseLab = () => {};

const byName = (name: string): MirrorScenario => {
  const scenario = mirrorScenarios.find((each) => each.name === name);
  if (scenario === undefined) throw new Error(`no mirror scenario ${name}`);
  return scenario;
};

async function run(name: string): Promise<LabMirrorOutcome> {
  const outcome = await runMirrorScenarioOnLab(byName(name), { lab, progress: (line) => progress.push(line) });
  results.push({ scenario: name, outcome });
  console.log(`mirror scenario ${name} on the lab: ${outcome.passed ? "passed" : `FAILED (${outcome.failure})`}\n${outcome.timeline.join("\n")}`);
  return outcome;
}

/** The incremental resyncs of a run: each must be a small part of the 40 MB data directory. */
function expectOnlyChangedBlocks(outcome: LabMirrorOutcome): void {
  const incremental = outcome.resyncs.filter((each) => !each.full);
  expect(incremental.length, `no incremental resync: ${JSON.stringify(outcome.resyncs)}`).toBeGreaterThan(0);
  const full = outcome.resyncs.find((each) => each.full);
  expect(full, "the first copy is a full resync").toBeDefined();
  for (const each of incremental) expect(each.blockBytes, `an incremental resync sent ${each.blockBytes} bytes, the first copy ${full!.blockBytes}`).toBeLessThan(full!.blockBytes / 10);
}

describe("the mirror scenarios, unchanged, on the Docker lab with PostgreSQL", () => {
  setUpOrFailEach(progress, async () => {
    await requireDocker(docker);
    const unavailable = fuseUnavailable();
    if (unavailable !== null) throw new Error(`the mirror lab passes /dev/fuse to its containers: ${unavailable.message}`);
    releaseLab = await lockLab("test/lab/mirror-scenarios.test.ts");
    await ensureImages(docker, (line) => progress.push(line));
  });

  afterAll(async () => {
    await lab.down().catch(() => {});
    releaseLab();
    const lines = results.map(({ scenario, outcome }) => {
      const waits = outcome.waits.map((wait) => `${wait.description}: ${wait.tookMs.toFixed(0)} ms (bound ${wait.boundMs})`).join("; ");
      const resyncs = outcome.resyncs.filter((each) => !each.full).map((each) => `${each.blockBytes} B in ${each.ms.toFixed(0)} ms`).join(", ");
      return `  ${scenario.padEnd(32)} ${outcome.passed ? "passed" : "FAILED"}  setup ${outcome.setupMs} ms, run ${outcome.runMs} ms; ${waits}${resyncs === "" ? "" : `; incremental resyncs ${resyncs}`}`;
    });
    console.log(`mirror scenarios on the lab:\n${lines.join("\n")}`);
  }, 120_000);

  for (const name of ["primary-power-loss", "secondary-down-resync"]) {
    it(`${name}: ${byName(name).summary}`, async () => {
      const outcome = await run(name);
      expect(outcome.failure, outcome.timeline.join("\n")).toBeNull();
      expectOnlyChangedBlocks(outcome);
    }, 300_000);
  }

  for (const name of ["power-loss-both-primary-first", "power-loss-both-secondary-first", "power-loss-both-at-once", "double-failure", "split-brain-no-witness", "split-brain-witness", "mirror-flapping-network", "swap-under-load", "failover-off", "defaultprim-swap-back"]) {
    it(`${name}: ${byName(name).summary}`, async () => {
      const outcome = await run(name);
      expect(outcome.failure, outcome.timeline.join("\n")).toBeNull();
    }, 300_000);
  }

  it("disk-full-secondary and split-brain-preserve-fails: the lab says it has no disk faults", async () => {
    for (const [name, verb] of [["disk-full-secondary", "diskRoom"], ["split-brain-preserve-fails", "failNextPreserve"]] as const) {
      const outcome = await run(name);
      expect(outcome.failure).toMatch(new RegExp(`^LabUnsupported: ${verb} on n[12]: the lab has no disk faults`));
    }
  }, 300_000);
});
