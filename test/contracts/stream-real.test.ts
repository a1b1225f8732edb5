// The real control streams (drivers/real/streams.ts) on loopback: three nodes, each on its
// own address, every connection through a relay (test/real/tcp-proxy.ts) that can swallow
// traffic silently, which is how the harness partitions two nodes; the StreamPort
// contract with short timings (ping 50 ms, idle timeout 300 ms). The real-only behaviour
// (forged, replayed and garbage frames, back-pressure, routes) is in test/real/streams.test.ts.

import { makeRealStreamHarness } from "../real/stream-harness.ts";
import { streamPortContract } from "./stream-contract.ts";

streamPortContract("real", () => makeRealStreamHarness());
