// Commands on other nodes (-H): node services talk over the authenticated control stream.

import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../cli/run-cli.ts";
import { DaemonHarness, traceOf, until } from "./daemon-harness.ts";

const harness = new DaemonHarness();
afterAll(() => harness.remove());

describe("tandem -H", () => {
  it("asks other nodes' services, answers for each node, and says which node could not answer", async () => {
    // A random /24 of loopback and port, so that parallel test files do not meet.
    const net = `127.${10 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}`;
    const cluster = { nodes: { n1: `${net}.1`, n2: `${net}.2`, n3: `${net}.3` }, key: DaemonHarness.key(), peerPort: 20_000 + Math.floor(Math.random() * 10_000) };
    const n1 = harness.setup({ node: "n1", cluster });
    const n2 = harness.setup({ node: "n2", cluster });
    await harness.start(n1);
    await harness.start(n2);
    const both = () => JSON.parse(runCli(["state", "-H", "n1,n2", "--json", "--socket", n1.socket]).output) as { node: string; ok: boolean }[];
    await until(() => both().every((answer) => answer.ok), 10_000, () => JSON.stringify(both()));

    const started = runCli(["start", "-m", "app", "-H", "n2", "--wait", "--socket", n1.socket]);
    expect(started.code).toBe(0);
    expect(started.output).toMatch(/app +n2 +light +UP \(Ready\)/);
    expect(traceOf(n2)).toContain("start_both WAIT UP start module=app");
    expect(traceOf(n1)).toEqual([]);

    const all = runCli(["state", "-H", "*", "--socket", n1.socket]);
    expect(all.code).toBe(1);
    expect(all.output).toMatch(/app +n1 +light +STOP/);
    expect(all.output).toMatch(/app +n2 +light +UP/);
    expect(all.output).toContain("n3: node n3 is not connected");

    const unknown = runCli(["state", "-H", "n9", "--socket", n1.socket]);
    expect([unknown.code, unknown.output]).toEqual([1, expect.stringContaining("no node n9 in cluster.xml (its nodes: n1, n2, n3)")]);
  });

  it("without a cluster key, -H says what is missing", async () => {
    const node = harness.setup({ node: "n1" });
    await harness.start(node);
    const result = runCli(["state", "-H", "n1", "--socket", node.socket]);
    expect([result.code, result.output]).toEqual([1, expect.stringContaining("-H needs the cluster key")]);
  });
});
