// The simulated disk (drivers/sim/disk.ts) against the DiskPort contract, on a private event
// queue in virtual time, with jitter so that completion order does not come from equal
// latencies. What only the simulator has (durability, faults) is in test/sim/disk.test.ts.

import { SimDisk } from "../../drivers/sim/disk.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { Prng } from "../../drivers/sim/prng.ts";
import { diskContract, type DiskHarness, type TestMeta } from "./disk-contract.ts";
import { virtualTime } from "./virtual-time.ts";

const preservedPrefix = "preserved/";

function makeSimHarness(seed: number): DiskHarness {
  const queue = new EventQueue();
  const time = virtualTime(queue, 1);
  const disk = new SimDisk<TestMeta>({ queue, clockMs: () => time.nowMs, prng: new Prng(seed).fork("disk"), settings: { latencyMs: 0.1, jitterMs: 0.5, fsyncMs: 3 } });
  return {
    port: disk.open(),
    preservedFile: async (place, path) => (place.startsWith(preservedPrefix) ? disk.preservedBytes(place.slice(preservedPrefix.length), path) : null),
    advance: time.advance,
    waitFor: time.waitFor,
    dispose: async () => {},
  };
}

let seed = 1;
diskContract("sim", async () => makeSimHarness(seed++));
