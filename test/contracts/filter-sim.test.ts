// The simulated kernel filter (drivers/sim/kernel-filter.ts) under the FilterPort contract:
// two SimKernelFilters on a virtual clock; a connection's SYN and its data are decided by
// every node's filter, as the simulator's world delivers every client packet to every node.

import { SimKernelFilter } from "../../drivers/sim/kernel-filter.ts";
import { kernelBucket } from "../../drivers/real/filter.ts";
import { filterPortContract, type ExchangeOutcome, type FilterHarness, type Flow } from "./filter-contract.ts";

const bucketCount = 256;
const hashSeed = 0x7a3d_91c5;
const clientIp = "192.0.2.10";

function makeSimHarness(): FilterHarness {
  let nowMs = 0;
  let nextPort = 20_000;
  const makeKernel = () => new SimKernelFilter(bucketCount, "none");
  const kernels = [makeKernel(), makeKernel()];
  const accepted = [0, 0];
  const flowKey = (flow: Flow) => `${clientIp}:${flow.sourcePort}`;
  /** Per answered flow, the node that answered its handshake. */
  const answeredFlows = new Map<number, number>();

  const connectOne = (flow: Flow): number | null => {
    const acceptors = kernels.flatMap((kernel, node) => (kernel.decide(flow.bucket, flowKey(flow), true, nowMs) === "accept" ? [node] : []));
    for (const node of acceptors) {
      kernels[node]!.establish(flowKey(flow));
      accepted[node]!++;
    }
    if (acceptors.length > 0) answeredFlows.set(flow.sourcePort, acceptors[0]!);
    return acceptors[0] ?? null;
  };

  const exchangeOne = (flow: Flow): ExchangeOutcome => {
    if (!answeredFlows.has(flow.sourcePort)) return { kind: "silent" };
    const verdicts = kernels.map((kernel) => kernel.decide(flow.bucket, flowKey(flow), false, nowMs));
    const node = verdicts.indexOf("accept");
    if (node >= 0) return { kind: "answered", node };
    if (verdicts.includes("reset")) {
      answeredFlows.delete(flow.sourcePort);
      return { kind: "reset" };
    }
    return { kind: "silent" };
  };

  return {
    nodeCount: 2,
    bucketCount,
    newFlows: (count) =>
      Array.from({ length: count }, () => {
        const sourcePort = nextPort++;
        return { sourcePort, bucket: kernelBucket(clientIp, sourcePort, bucketCount, hashSeed) };
      }),
    apply: async (node, settings) => kernels[node]!.apply(settings, nowMs),
    renew: async (node, leaseMs) => kernels[node]!.renew(leaseMs, nowMs),
    setVip: async (node, state) => kernels[node]!.setVip(state),
    crash: async (node) => kernels[node]!.flushRules(),
    connect: async (flows) => flows.map(connectOne),
    exchange: async (flow) => exchangeOne(flow),
    // The answer leaves from the VIP: it is routed while the address is local (up or draining).
    answerFrom: async (node, flow) => (answeredFlows.get(flow.sourcePort) === node && kernels[node]!.canAnswer() ? { kind: "answered", node } : { kind: "silent" }),
    acceptedCount: async (node) => accepted[node]!,
    sleep: async (ms) => {
      nowMs += ms;
    },
    reset: async () => {
      // A restarted service starts with an empty filter and the VIP down; conntrack stays.
      for (const kernel of kernels) {
        kernel.flushRules();
        kernel.setVip("down");
      }
      answeredFlows.clear();
    },
    dispose: async () => {},
  };
}

filterPortContract("simulated kernel filter", async () => makeSimHarness(), { flowCount: 200, leaseMs: 600 });
