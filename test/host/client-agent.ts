// The client of the host farm tests, run inside the client namespace with
// `ip netns exec NS node client-agent.ts`. One JSON command per line on stdin, one JSON
// line per answer on stdout: {id, ok, result|error}.
//
//   get    {host, port, localAddress, ports, keep, timeoutMs, path?}: one HTTP connection
//          per source port, "GET /" (or path) on each; the answer is the body (the node's
//          name), "reset", or null (nothing within timeoutMs). With keep the connections
//          stay open (keep-alive) for `again`; without, the request asks the server to close.
//   again  {ports, timeoutMs}: another request on connections kept open.
//   probe  {host, port, localAddress, ports, intervalMs, timeoutMs, deadlineMs}: a new
//          connection every intervalMs, from the next port, until one is answered; returns
//          when (wall clock, ms with a fraction) and by whom, or null at the deadline.
//   udp    {host, port, datagrams (base64)}: sends each datagram from an ephemeral port.
//   closeAll

import { createSocket } from "node:dgram";
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";

type Command = { readonly id: number; readonly op: string; readonly [field: string]: unknown };
type Answer = string | "reset" | null;

interface Held {
  readonly socket: Socket;
  /** Called with each complete response body, or "reset"/"closed". */
  onAnswer: ((answer: string) => void) | null;
  buffered: Buffer;
  reset: boolean;
  closed: boolean;
}

const held = new Map<number, Held>();

/** Wall-clock milliseconds with a fraction; comparable across processes of one host. */
const wallMs = () => performance.timeOrigin + performance.now();

function request(keep: boolean, path = "/"): string {
  return `GET ${path} HTTP/1.1\r\nHost: vip\r\nConnection: ${keep ? "keep-alive" : "close"}\r\n\r\n`;
}

/** Cuts complete HTTP responses (Content-Length bodies) out of the buffer. */
function takeResponses(entry: Held): void {
  for (;;) {
    const end = entry.buffered.indexOf("\r\n\r\n");
    if (end < 0) return;
    const head = entry.buffered.subarray(0, end).toString("latin1");
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? "0");
    if (entry.buffered.length < end + 4 + length) return;
    const body = entry.buffered.subarray(end + 4, end + 4 + length).toString("utf8");
    entry.buffered = entry.buffered.subarray(end + 4 + length);
    entry.onAnswer?.(body);
  }
}

function open(host: string, port: number, localAddress: string, localPort: number, keep: boolean, timeoutMs: number, path = "/"): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, localAddress, localPort });
    const entry: Held = { socket, onAnswer: null, buffered: Buffer.alloc(0), reset: false, closed: false };
    let done = false;
    const finish = (answer: Answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      entry.onAnswer = null;
      if (keep && typeof answer === "string" && answer !== "reset") held.set(localPort, entry);
      else socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    entry.onAnswer = (body) => finish(body === "closed" ? null : body);
    socket.on("connect", () => socket.write(request(keep, path)));
    socket.on("data", (chunk: Buffer) => {
      entry.buffered = Buffer.concat([entry.buffered, chunk]);
      takeResponses(entry);
    });
    // 'close' follows 'error' and reports it.
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNRESET" || error.code === "ECONNREFUSED") entry.reset = true;
    });
    socket.on("close", () => {
      entry.closed = true;
      entry.onAnswer?.(entry.reset ? "reset" : "closed");
    });
  });
}

function again(localPort: number, timeoutMs: number): Promise<Answer> {
  const entry = held.get(localPort);
  if (entry === undefined) return Promise.resolve(null);
  if (entry.reset) return Promise.resolve("reset");
  if (entry.closed) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      entry.onAnswer = null;
      resolve(null);
    }, timeoutMs);
    entry.onAnswer = (answer) => {
      clearTimeout(timer);
      entry.onAnswer = null;
      resolve(answer === "closed" ? null : answer);
    };
    entry.socket.write(request(true));
  });
}

interface ProbeResult {
  readonly answeredAtMs: number;
  readonly startedAtMs: number;
  readonly port: number;
  readonly answer: string;
  readonly attempts: number;
}

function probe(command: Command): Promise<ProbeResult | null> {
  const ports = command["ports"] as number[];
  const [host, port, localAddress] = [command["host"] as string, command["port"] as number, command["localAddress"] as string];
  const intervalMs = command["intervalMs"] as number;
  const timeoutMs = command["timeoutMs"] as number;
  const deadline = wallMs() + (command["deadlineMs"] as number);
  return new Promise((resolve) => {
    let next = 0;
    let done = false;
    const finish = (result: ProbeResult | null) => {
      if (done) return;
      done = true;
      clearInterval(interval);
      resolve(result);
    };
    const launch = () => {
      if (done) return;
      if (next >= ports.length || wallMs() > deadline) return finish(null);
      const localPort = ports[next++]!;
      const startedAtMs = wallMs();
      void open(host, port, localAddress, localPort, false, timeoutMs).then((answer) => {
        if (typeof answer === "string" && answer !== "reset") finish({ answeredAtMs: wallMs(), startedAtMs, port: localPort, answer, attempts: next });
      });
    };
    const interval = setInterval(launch, intervalMs);
    launch();
  });
}

async function sendDatagrams(host: string, port: number, datagrams: readonly string[]): Promise<number> {
  const socket = createSocket("udp4");
  try {
    for (const datagram of datagrams) {
      await new Promise<void>((resolve, reject) => socket.send(Buffer.from(datagram, "base64"), port, host, (error) => (error ? reject(error) : resolve())));
    }
  } finally {
    socket.close();
  }
  return datagrams.length;
}

async function run(command: Command): Promise<unknown> {
  switch (command.op) {
    case "get": {
      const ports = command["ports"] as number[];
      const [host, port, localAddress] = [command["host"] as string, command["port"] as number, command["localAddress"] as string];
      const path = typeof command["path"] === "string" ? command["path"] : "/";
      return Promise.all(ports.map((localPort) => open(host, port, localAddress, localPort, command["keep"] === true, command["timeoutMs"] as number, path)));
    }
    case "again":
      return Promise.all((command["ports"] as number[]).map((localPort) => again(localPort, command["timeoutMs"] as number)));
    case "probe":
      return probe(command);
    case "udp":
      return sendDatagrams(command["host"] as string, command["port"] as number, command["datagrams"] as string[]);
    case "closeAll":
      for (const entry of held.values()) entry.socket.destroy();
      held.clear();
      return null;
    default:
      throw new Error(`unknown command ${command.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line) as Command;
  run(command).then(
    (result) => process.stdout.write(`${JSON.stringify({ id: command.id, ok: true, result })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ id: command.id, ok: false, error: `${error.name}: ${error.message}` })}\n`),
  );
});
lines.on("close", () => process.exit(0));
process.stdout.write(`${JSON.stringify({ id: 0, ok: true, result: "ready" })}\n`);
