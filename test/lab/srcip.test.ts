// The `srcip` rule (the module's `on_addr`) on the Docker lab: a client address is always
// answered by one node while the membership is stable, and different client addresses
// spread over more than one node. The farm of three real node services is the Lab's
// (lab/lab.ts, brought up with farm mode srcip); the client making the requests is a
// testcontainers GenericContainer on the lab's network, from the lab's own node image
// (local: never pulled), at a fixed address (198.18.0.110) with 16 more addresses
// (.111 to .126) added to its eth0 so that each stands for one client host.
//
// testcontainers' reaper (Ryuk) is an image from a registry this host cannot reach, so it
// is disabled here (TESTCONTAINERS_RYUK_DISABLED) and the container is removed in
// afterAll; it also carries the lab's label, so `tandem lab down` (run after it) removes it
// if a crash left it behind. testcontainers has no option for a fixed address on a user
// network: the container's Docker create options are completed in beforeContainerCreated,
// the extension point it gives subclasses.
//
// Needs a running Docker engine (dockerd) and root; it FAILS, saying how to start dockerd,
// rather than skip. Takes the lab's lock (test/lab/lab-lock.ts).

import { GenericContainer, type StartedTestContainer } from "testcontainers";
import { afterAll, describe, expect, it } from "vitest";
import { dockerClient, ensureImages, requireDocker } from "../../lab/images.ts";
import { labLabel, Lab, labVip, networkName, type LabStatus } from "../../lab/lab.ts";
import { lockLab, setUpOrFailEach } from "./lab-lock.ts";

// No reaper: its image cannot be pulled here (read when a container starts, not at import).
process.env["TESTCONTAINERS_RYUK_DISABLED"] = "true";

const names = ["n1", "n2", "n3"];
const clientAddress = "198.18.0.110";
/** One more address per client host: 198.18.0.111 to .126 (none of the lab's: nodes .1–.9,
 *  its client .10, the load's clients .11–.99, VIPs .100–.101, Docker's own .128/25). */
const hostAddresses = Array.from({ length: 16 }, (_, index) => `198.18.0.${111 + index}`);
const requestsPerAddress = 40;

const docker = dockerClient();
const lab = new Lab({ docker, progress: (line) => progress.push(line) });
const progress: string[] = [];
const timings: Record<string, number> = {};
let client: StartedTestContainer | null = null;
let releaseLab = () => {};

/** A GenericContainer attached to one user network at a fixed address. */
class FixedAddressContainer extends GenericContainer {
  readonly #network: string;
  readonly #address: string;

  constructor(image: string, network: string, address: string) {
    super(image);
    this.#network = network;
    this.#address = address;
    this.withNetworkMode(network);
  }

  protected override async beforeContainerCreated(): Promise<void> {
    this.createOpts.NetworkingConfig = { EndpointsConfig: { [this.#network]: { IPAMConfig: { IPv4Address: this.#address } } } };
  }
}

/** In the client: for each source address, `count` requests to the VIP one after the
 *  other, each on a new connection (so from a new source port); who answered each. */
const requestScript = String.raw`
const http = require("node:http");
const [vip, count, ...addresses] = process.argv.slice(1);
const one = (localAddress) => new Promise((resolve) => {
  let done = false;
  const finish = (answer) => { if (!done) { done = true; resolve(answer); } };
  const request = http.get({ host: vip, port: 80, path: "/", localAddress, agent: false, timeout: 2000 }, (response) => {
    let body = "";
    response.setEncoding("utf8");
    response.on("data", (chunk) => (body += chunk));
    response.on("end", () => finish(body.trim()));
    response.on("error", () => finish("reset"));
  });
  request.on("timeout", () => { request.destroy(); finish("timeout"); });
  request.on("error", (error) => finish(error.code || "error"));
});
(async () => {
  const answers = {};
  await Promise.all(addresses.map(async (address) => {
    answers[address] = [];
    for (let index = 0; index < Number(count); index++) answers[address].push(await one(address));
  }));
  console.log(JSON.stringify(answers));
})();
`;

async function requests(addresses: readonly string[], count: number): Promise<Record<string, string[]>> {
  if (client === null) throw new Error("no client container");
  const result = await client.exec(["node", "-e", requestScript, labVip, String(count), ...addresses]);
  if (result.exitCode !== 0) throw new Error(`requests from the client failed (${result.exitCode}): ${result.stderr.trim()}`);
  return JSON.parse(result.stdout) as Record<string, string[]>;
}

/** Each node's members and buckets, as one comparable string (stable membership: unchanged). */
const membership = (status: LabStatus) =>
  status.nodes.map((node) => `${node.name} ${node.farm?.state}/${node.farm?.farm?.state} [${[...(node.farm?.farm?.members ?? [])].sort().join(",")}] ${node.farm?.farm?.ownedBuckets}`).join("; ");

const tally = (answers: readonly string[]) => {
  const counts: Record<string, number> = {};
  for (const answer of answers) counts[answer] = (counts[answer] ?? 0) + 1;
  return counts;
};

describe("srcip on the Docker lab: one client address, one node", () => {
  setUpOrFailEach(progress, async () => {
    await requireDocker(docker);
    releaseLab = await lockLab("test/lab/srcip.test.ts");
    const images = await ensureImages(docker, (line) => progress.push(line));
    await lab.down();
    let started = performance.now();
    await lab.up({ nodes: names.length, farm: { mode: "srcip" } });
    timings["lab up (srcip)"] = Math.round(performance.now() - started);
    started = performance.now();
    client = await new FixedAddressContainer(images.node, networkName, clientAddress)
      .withName("tandem-lab-tc-client")
      .withLabels({ [labLabel]: "1" })
      .withAddedCapabilities("NET_ADMIN")
      .withCommand(["sleep", "infinity"])
      // The image is the lab's own, built here: never look for it in a registry.
      .withPullPolicy({ shouldPull: () => false })
      .start();
    const added = await client.exec(["sh", "-c", hostAddresses.map((address) => `ip addr add ${address}/32 dev eth0`).join(" && ")]);
    if (added.exitCode !== 0) throw new Error(`cannot add the client's addresses: ${added.output.trim()}`);
    timings["client container (testcontainers)"] = Math.round(performance.now() - started);
  });

  afterAll(async () => {
    // The client first: the lab's network cannot be removed while it is attached.
    await client?.stop({ remove: true, removeVolumes: true }).catch((error: Error) => console.log(`removing the client container: ${error.message}`));
    await lab.down().catch(() => {});
    releaseLab();
    console.log(`srcip test timings (ms): ${JSON.stringify(timings)}`);
  }, 120_000);

  it("the client container is on the lab's network at its fixed address", () => {
    expect(client!.getIpAddress(networkName)).toBe(clientAddress);
  });

  it(`one client address: all ${requestsPerAddress} requests (new connections) answered by one node, the membership stable`, async () => {
    const before = await lab.status();
    expect(before.nodes.every((node) => [...(node.farm?.farm?.members ?? [])].sort().join(",") === names.join(",")), membership(before)).toBe(true);
    const started = performance.now();
    const answers = (await requests([clientAddress], requestsPerAddress))[clientAddress]!;
    timings[`${requestsPerAddress} requests from one address`] = Math.round(performance.now() - started);
    const after = await lab.status();
    expect(membership(after)).toBe(membership(before));
    const counts = tally(answers);
    expect(answers.length).toBe(requestsPerAddress);
    expect(Object.keys(counts), JSON.stringify(counts)).toHaveLength(1);
    expect(names, JSON.stringify(counts)).toContain(answers[0]);
  });

  it(`${hostAddresses.length} client addresses: each always answered by its one node, together by more than one node`, async () => {
    const before = await lab.status();
    const started = performance.now();
    const answers = await requests(hostAddresses, requestsPerAddress);
    timings[`${requestsPerAddress} requests from each of ${hostAddresses.length} addresses`] = Math.round(performance.now() - started);
    const after = await lab.status();
    expect(membership(after)).toBe(membership(before));
    const nodeOf: Record<string, string> = {};
    for (const address of hostAddresses) {
      const counts = tally(answers[address] ?? []);
      expect(Object.keys(counts), `${address}: ${JSON.stringify(counts)}`).toHaveLength(1);
      expect(counts[Object.keys(counts)[0]!], address).toBe(requestsPerAddress);
      nodeOf[address] = Object.keys(counts)[0]!;
    }
    const used = new Set(Object.values(nodeOf));
    for (const node of used) expect(names).toContain(node);
    expect(used.size, JSON.stringify(nodeOf)).toBeGreaterThan(1);
    console.log(`srcip: address → node ${JSON.stringify(nodeOf)}`);
  });
});
