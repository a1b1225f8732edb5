// A helper process of filter-real.test.ts, run inside a network namespace with
// `ip netns exec NS node filter-real-agent.ts node|client NAME`. It reads one JSON
// command per line on stdin and answers one JSON line on stdout: {id, ok, result|error}.
//
// node:   holds a RealFilterPort (open, apply, renew, setVip, close, list) and the
//         "application": TCP servers that greet each connection with the node's name,
//         answer each line with "NAME LINE", and write "NAME push" when told (push).
// client: opens connections from chosen source ports (connect), sends a line on one
//         (exchange) or waits for one (receive), reporting which node answered, a reset,
//         or silence.

import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { BucketSet } from "../../core/bucket-set.ts";
import type { VipState } from "../../core/ports.ts";
import { RealFilterPort, type RealFilterOptions } from "../../drivers/real/filter.ts";
import { nativeBinding } from "../../native/index.ts";

type Command = { readonly id: number; readonly op: string; readonly [field: string]: unknown };

const [mode, name] = process.argv.slice(2);
if ((mode !== "node" && mode !== "client") || name === undefined) {
  console.error("usage: filter-real-agent.ts node|client NAME");
  process.exit(2);
}

// ---- node ----

let filter: RealFilterPort | null = null;
const servers: Server[] = [];
let acceptedCount = 0;
/** The application's connections, by the client's port. */
const connections = new Map<number, Socket>();
const logLines: string[] = [];

function serve(ports: readonly number[]): Promise<void> {
  return Promise.all(
    ports.map(
      (port) =>
        new Promise<void>((resolve, reject) => {
          const server = createServer((socket) => {
            acceptedCount++;
            connections.set(socket.remotePort!, socket);
            socket.on("close", () => connections.get(socket.remotePort!) === socket && connections.delete(socket.remotePort!));
            socket.on("error", () => {});
            socket.write(`${name}\n`);
            let pending = "";
            socket.on("data", (chunk) => {
              pending += chunk.toString();
              for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
                socket.write(`${name} ${pending.slice(0, end)}\n`);
                pending = pending.slice(end + 1);
              }
            });
          });
          server.once("error", reject);
          server.listen(port, "0.0.0.0", () => resolve());
          servers.push(server);
        }),
    ),
  ).then(() => undefined);
}

function bucketSets(command: Command): { owned: BucketSet; lingering: BucketSet; reset: BucketSet } {
  const bucketCount = filter!.options.bucketCount;
  return {
    owned: BucketSet.of(bucketCount, command["owned"] as number[]),
    lingering: BucketSet.of(bucketCount, command["lingering"] as number[]),
    reset: BucketSet.of(bucketCount, command["reset"] as number[]),
  };
}

async function nodeCommand(command: Command): Promise<unknown> {
  switch (command.op) {
    case "open":
      filter = new RealFilterPort({ ...(command["options"] as RealFilterOptions), log: (line) => logLines.push(line) });
      return null;
    case "serve":
      await serve(command["ports"] as number[]);
      return null;
    case "apply":
      filter!.apply({ ...bucketSets(command), leaseMs: command["leaseMs"] as number });
      return null;
    case "renew":
      filter!.renew(command["leaseMs"] as number);
      return null;
    case "setVip":
      filter!.setVip(command["state"] as VipState);
      return null;
    case "close":
      filter!.close();
      return null;
    case "list":
      return filter!.listTables();
    case "kernelTables": {
      // A context of its own: what the kernel holds, whoever made it.
      const context = new (nativeBinding().NftContext)();
      const tables = context.run("list tables");
      context.close();
      return tables;
    }
    case "push": {
      // The application answers, unasked, on the connection from the client's port.
      const socket = connections.get(command["port"] as number);
      if (socket === undefined) throw new Error(`no connection from port ${command["port"]}`);
      socket.write(`${name} push\n`);
      return null;
    }
    case "stats":
      return { accepted: acceptedCount, arp: filter?.arpStats() ?? null, log: logLines };
    default:
      throw new Error(`unknown node command ${command.op}`);
  }
}

// ---- client ----

const sockets = new Map<number, { socket: Socket; lines: string[]; waiters: (() => void)[]; reset: boolean }>();

function connectOne(host: string, port: number, localAddress: string, localPort: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port, localAddress, localPort });
    const entry = { socket, lines: [] as string[], waiters: [] as (() => void)[], reset: false };
    let pending = "";
    const timer = setTimeout(() => finish(null), timeoutMs);
    let done = false;
    function finish(answer: string | null): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (answer === null) socket.destroy();
      else sockets.set(localPort, entry);
      resolve(answer);
    }
    socket.on("data", (chunk) => {
      pending += chunk.toString();
      for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
        entry.lines.push(pending.slice(0, end));
        pending = pending.slice(end + 1);
      }
      if (!done && entry.lines.length > 0) finish(entry.lines.shift()!);
      for (const waiter of entry.waiters.splice(0)) waiter();
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNRESET") entry.reset = true;
      for (const waiter of entry.waiters.splice(0)) waiter();
      finish(null);
    });
  });
}

function exchange(localPort: number, timeoutMs: number, send: boolean): Promise<string> {
  const entry = sockets.get(localPort);
  if (entry === undefined || entry.socket.destroyed) return Promise.resolve(entry?.reset === true ? "reset" : "silent");
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("silent"), timeoutMs);
    const check = () => {
      if (entry.reset) {
        clearTimeout(timer);
        resolve("reset");
      } else if (entry.lines.length > 0) {
        clearTimeout(timer);
        resolve(`answered ${entry.lines.shift()!.split(" ")[0]}`);
      } else {
        entry.waiters.push(check);
      }
    };
    if (send) entry.socket.write("ping\n");
    check();
  });
}

async function clientCommand(command: Command): Promise<unknown> {
  switch (command.op) {
    case "connect": {
      const ports = command["localPorts"] as number[];
      const answers = await Promise.all(ports.map((localPort) => connectOne(command["host"] as string, command["port"] as number, command["localAddress"] as string, localPort, command["timeoutMs"] as number)));
      return answers;
    }
    case "exchange":
      return exchange(command["localPort"] as number, command["timeoutMs"] as number, true);
    case "receive":
      return exchange(command["localPort"] as number, command["timeoutMs"] as number, false);
    case "closeAll":
      for (const entry of sockets.values()) entry.socket.destroy();
      sockets.clear();
      return null;
    default:
      throw new Error(`unknown client command ${command.op}`);
  }
}

// ---- protocol ----

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line) as Command;
  const run = mode === "node" ? nodeCommand : clientCommand;
  run(command).then(
    (result) => process.stdout.write(`${JSON.stringify({ id: command.id, ok: true, result })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ id: command.id, ok: false, error: `${error.name}: ${error.message}`, code: (error as { code?: string }).code ?? null })}\n`),
  );
});
lines.on("close", () => {
  filter?.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ id: 0, ok: true, result: "ready" })}\n`);
