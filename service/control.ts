// The node service's control socket: a unix socket readable by root only, one JSON
// request per line, one JSON response per line. `tandem` commands are its clients.
//
//   → {"id":1,"verb":"state","module":"web"}
//   ← {"id":1,"ok":true,"result":[{"module":"web","state":"UP",...}]}
//   ← {"id":1,"ok":false,"error":"no module web on this node (its modules: db)"}

import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";

export interface ControlRequest {
  readonly id: number;
  readonly verb: string;
  readonly module?: string;
  readonly [field: string]: unknown;
}

export type ControlResponse = { readonly id: number; readonly ok: true; readonly result: unknown } | { readonly id: number; readonly ok: false; readonly error: string };

/** A request line longer than this is refused and the connection closed. */
export const requestLineMax = 65_536;

export type ControlHandler = (request: ControlRequest) => Promise<unknown>;

/** Listens on `path` (mode 0600). A stale socket left by a dead service is replaced; a
 *  live one is not: two services on one node would fight over its modules. */
export async function listenControl(path: string, handle: ControlHandler): Promise<Server> {
  if (existsSync(path)) {
    if (await answers(path)) throw new Error(`a node service already listens on ${path}; stop it first (systemctl stop tandem)`);
    unlinkSync(path);
  }
  const server = createServer((socket) => serve(socket, handle));
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(previous);
  }
  chmodSync(path, 0o600);
  return server;
}

function serve(socket: Socket, handle: ControlHandler): void {
  let buffered = "";
  socket.setEncoding("utf8");
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    if (buffered.length > requestLineMax && !buffered.includes("\n")) {
      socket.end(`${JSON.stringify({ id: 0, ok: false, error: `request longer than ${requestLineMax} bytes` })}\n`);
      return;
    }
    for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      void answer(line, handle).then((response) => socket.writable && socket.write(`${JSON.stringify(response)}\n`));
    }
  });
}

async function answer(line: string, handle: ControlHandler): Promise<ControlResponse> {
  let request: ControlRequest;
  try {
    request = JSON.parse(line) as ControlRequest;
    if (typeof request !== "object" || request === null || typeof request.verb !== "string" || typeof request.id !== "number") throw new Error("not a request");
  } catch {
    return { id: 0, ok: false, error: "not a control request: expected one JSON object per line with id and verb" };
  }
  try {
    return { id: request.id, ok: true, result: await handle(request) };
  } catch (error) {
    return { id: request.id, ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Sends one request and resolves with its result; rejects with the service's error, or
 *  with what to do when no service listens. */
export function requestControl(path: string, verb: string, fields: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buffered = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the node service at ${path} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      socket.destroy();
      settle();
    };
    socket.setEncoding("utf8");
    socket.once("connect", () => socket.write(`${JSON.stringify({ id: 1, verb, ...fields })}\n`));
    socket.on("data", (chunk: string) => {
      buffered += chunk;
      const newline = buffered.indexOf("\n");
      if (newline < 0) return;
      const response = JSON.parse(buffered.slice(0, newline)) as ControlResponse;
      finish(() => (response.ok ? resolve(response.result) : reject(new Error(response.error))));
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      const why =
        error.code === "ENOENT" || error.code === "ECONNREFUSED"
          ? `no node service listens on ${path}: start it (systemctl start tandem, or tandem daemon)`
          : error.code === "EACCES"
            ? `${path} is readable by root only: run tandem as root`
            : `cannot reach the node service at ${path}: ${error.message}`;
      finish(() => reject(new Error(why)));
    });
  });
}
