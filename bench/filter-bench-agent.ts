// The node side of bench/filter-bench.ts, run inside the node's namespace with
// `ip netns exec NS node filter-bench-agent.ts filter|conntrack OPTIONS_JSON`.
//
// filter:    a RealFilterPort owning every bucket, its VIP up, and its lease renewed
//            every heartbeat (50 ms) as the farm core does.
// conntrack: the reference "conntrack only": an nftables table with one `ct state` rule
//            in prerouting, which turns conntrack on in the namespace and balances
//            nothing (the VIP is left to the caller).
//
// Prints one JSON line when its table is in place ({ready, tables}); on the line "stop"
// on stdin it removes what it made and prints its figures ({renewals, longestGapMs, log}),
// then exits.

import { createInterface } from "node:readline";
import { BucketSet } from "../core/bucket-set.ts";
import { defaultFarmTimings } from "../core/farm-config.ts";
import { RealFilterPort, type RealFilterOptions } from "../drivers/real/filter.ts";
import { nativeBinding } from "../native/index.ts";

const mode = process.argv[2];
const options = JSON.parse(process.argv[3] ?? "null") as RealFilterOptions | null;
if ((mode !== "filter" && mode !== "conntrack") || options === null) {
  console.error("usage: filter-bench-agent.ts filter|conntrack OPTIONS_JSON");
  process.exit(2);
}

const { heartbeatIntervalMs, leaseMs } = defaultFarmTimings;
const log: string[] = [];
let renewals = 0;
let longestGapMs = 0;
let tables: string;
let close: () => void;
let timer: NodeJS.Timeout | undefined;

if (mode === "filter") {
  const filter = new RealFilterPort({ ...options, log: (line) => log.push(line) });
  const all = BucketSet.of(
    options.bucketCount,
    Array.from({ length: options.bucketCount }, (_, bucket) => bucket),
  );
  const none = BucketSet.empty(options.bucketCount);
  filter.apply({ owned: all, lingering: none, reset: none, leaseMs });
  filter.setVip("up");
  let lastMs = performance.now();
  timer = setInterval(() => {
    const nowMs = performance.now();
    longestGapMs = Math.max(longestGapMs, nowMs - lastMs);
    lastMs = nowMs;
    filter.renew(leaseMs);
    renewals++;
  }, heartbeatIntervalMs);
  tables = filter.listTables();
  close = () => filter.close();
} else {
  const nft = new (nativeBinding().NftContext)();
  const table = `tandem_${options.module}_ct`;
  nft.run(`table ip ${table} {\n\tflags owner\n\tchain prerouting {\n\t\ttype filter hook prerouting priority -150; policy accept;\n\t\tct state established,related accept\n\t}\n}\n`);
  tables = nft.run(`list table ip ${table}`);
  close = () => {
    nft.run(`delete table ip ${table}`);
    nft.close();
  };
}

process.stdout.write(`${JSON.stringify({ ready: true, tables })}\n`);

let stopped = false;
function stop(): void {
  if (stopped) return;
  stopped = true;
  clearInterval(timer);
  close();
  process.stdout.write(`${JSON.stringify({ renewals, longestGapMs, log })}\n`, () => process.exit(0));
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "stop") stop();
});
process.stdin.on("end", stop);
process.on("SIGTERM", stop);
