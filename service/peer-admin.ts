// Operator commands for other nodes (`tandem -H n2,n3 state`): the local service sends
// them on the authenticated control stream to each node's service, which answers them as
// if they came from its own socket. A node that is down or unreachable answers with why.

import type { StreamPort } from "../core/ports.ts";
import type { NodeId } from "../core/types.ts";
import type { PayloadCodec } from "../drivers/real/wire.ts";
import type { ControlHandler, ControlRequest } from "./control.ts";

export type AdminMessage =
  | { readonly kind: "request"; readonly id: number; readonly request: ControlRequest }
  | { readonly kind: "response"; readonly id: number; readonly ok: boolean; readonly result?: unknown; readonly error?: string };

export interface NodeAnswer {
  readonly node: NodeId;
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: string;
}

/** Admin messages as the stream carries them; anything else is refused. */
export const adminCodec: PayloadCodec<AdminMessage> = {
  encode: (message) => message,
  decode: (value) => {
    if (typeof value !== "object" || value === null) return null;
    const message = value as Record<string, unknown>;
    if (!Number.isSafeInteger(message["id"])) return null;
    if (message["kind"] === "request") {
      const request = message["request"] as Record<string, unknown> | null;
      return typeof request === "object" && request !== null && typeof request["verb"] === "string" ? (value as AdminMessage) : null;
    }
    return message["kind"] === "response" && typeof message["ok"] === "boolean" ? (value as AdminMessage) : null;
  },
};

/** Verbs another node may ask for; `relay` is not one (no command travels twice). */
const remoteVerbs = new Set(["state", "start", "stop", "restart", "stopstart", "set", "log", "prim", "second", "swap"]);

export class PeerAdmin {
  readonly #self: NodeId;
  readonly #stream: StreamPort<AdminMessage>;
  readonly #pending = new Map<number, { node: NodeId; settle: (answer: NodeAnswer) => void; timer: NodeJS.Timeout }>();
  readonly #connected = new Map<NodeId, boolean>();
  #nextId = 1;

  constructor(self: NodeId, stream: StreamPort<AdminMessage>, handleLocally: ControlHandler) {
    this.#self = self;
    this.#stream = stream;
    stream.watchPeers((peer, connected) => {
      this.#connected.set(peer, connected);
      if (connected) return;
      // What was sent on a stream that broke may never be answered.
      for (const [id, pending] of this.#pending) if (pending.node === peer) this.#settle(id, { node: peer, ok: false, error: `node ${peer}: the connection to it broke before it answered` });
    });
    stream.listen((from, message) => {
      if (message.kind === "response") {
        const pending = this.#pending.get(message.id);
        if (pending !== undefined && pending.node === from) this.#settle(message.id, { node: from, ok: message.ok, ...(message.ok ? { result: message.result } : { error: message.error ?? "failed" }) });
        return;
      }
      const answer = remoteVerbs.has(message.request.verb) ? handleLocally(message.request) : Promise.reject(new Error(`${message.request.verb} cannot be asked of another node`));
      void answer.then(
        (result) => stream.send(from, { kind: "response", id: message.id, ok: true, result }),
        (error: unknown) => stream.send(from, { kind: "response", id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
      );
    });
  }

  /** Asks each node (this one locally); every node answers, with an error if it cannot. */
  async ask(nodes: readonly NodeId[], request: ControlRequest, handleLocally: ControlHandler, timeoutMs: number): Promise<NodeAnswer[]> {
    return Promise.all(
      nodes.map(async (node): Promise<NodeAnswer> => {
        if (node === this.#self) {
          try {
            return { node, ok: true, result: await handleLocally(request) };
          } catch (error) {
            return { node, ok: false, error: error instanceof Error ? error.message : String(error) };
          }
        }
        if (this.#connected.get(node) !== true) return { node, ok: false, error: `node ${node} is not connected: its service is stopped, or the network to it is down` };
        return new Promise<NodeAnswer>((settle) => {
          const id = this.#nextId++;
          const timer = setTimeout(() => this.#settle(id, { node, ok: false, error: `node ${node} did not answer within ${timeoutMs} ms` }), timeoutMs);
          this.#pending.set(id, { node, settle, timer });
          this.#stream.send(node, { kind: "request", id, request });
        });
      }),
    );
  }

  #settle(id: number, answer: NodeAnswer): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.settle(answer);
  }
}
