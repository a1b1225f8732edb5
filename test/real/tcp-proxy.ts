// A TCP relay between two real stream ports, for tests: it records what the connecting
// side sent, can corrupt it on the way, can stop reading (back-pressure) and can swallow
// everything silently both ways (a partition: no FIN, no RST reaches either side).

import { connect, createServer, type Server, type Socket } from "node:net";

interface Relay {
  readonly client: Socket;
  readonly upstream: Socket;
  /** Swallowed by a partition: cut when it heals, since bytes were lost mid-frame. */
  swallowed: boolean;
}

export class TcpProxy {
  /** Per accepted connection, every chunk the connecting side sent, as received. */
  readonly recorded: Buffer[][] = [];
  /** Applied to each chunk from the connecting side before it is forwarded. */
  tamper: ((chunk: Buffer) => Buffer) | null = null;
  readonly #listenAddr: string;
  readonly #target: { readonly addr: string; readonly port: number };
  readonly #port: number;
  readonly #relays = new Set<Relay>();
  #server: Server | null = null;
  #partitioned = false;
  #paused = false;

  constructor(listenAddr: string, port: number, target: { addr: string; port: number }) {
    this.#listenAddr = listenAddr;
    this.#port = port;
    this.#target = target;
  }

  /** Where the relay listens (on the same port as the target). */
  get addr(): string {
    return this.#listenAddr;
  }

  async start(): Promise<void> {
    const server = createServer((client) => this.#relay(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: this.#listenAddr, port: this.#port, exclusive: true }, () => resolve());
    });
    this.#server = server;
  }

  async close(): Promise<void> {
    for (const relay of this.#relays) this.#cut(relay);
    const server = this.#server;
    this.#server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Swallows everything both ways, on current and new connections, until heal(). */
  partition(): void {
    this.#partitioned = true;
    for (const relay of this.#relays) relay.swallowed = true;
  }

  heal(): void {
    this.#partitioned = false;
    for (const relay of this.#relays) if (relay.swallowed) this.#cut(relay);
  }

  /** Stops reading from the connecting side, so that its send buffer fills. */
  pause(): void {
    this.#paused = true;
    for (const relay of this.#relays) relay.client.pause();
  }

  resume(): void {
    this.#paused = false;
    for (const relay of this.#relays) relay.client.resume();
  }

  /** Cuts every connection with a reset. */
  cutAll(): void {
    for (const relay of this.#relays) this.#cut(relay);
  }

  #relay(client: Socket): void {
    const upstream = connect({ host: this.#target.addr, port: this.#target.port });
    const relay: Relay = { client, upstream, swallowed: this.#partitioned };
    const chunks: Buffer[] = [];
    this.recorded.push(chunks);
    this.#relays.add(relay);
    if (this.#paused) client.pause();
    client.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      if (!relay.swallowed) upstream.write(this.tamper === null ? chunk : this.tamper(chunk));
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!relay.swallowed) client.write(chunk);
    });
    for (const [socket, other] of [[client, upstream], [upstream, client]] as const) {
      socket.on("error", () => {});
      socket.on("close", () => {
        // A swallowed connection must not tell the other side anything: stay silent.
        if (!relay.swallowed) other.destroy();
        this.#relays.delete(relay);
      });
    }
  }

  #cut(relay: Relay): void {
    relay.client.resetAndDestroy();
    relay.upstream.resetAndDestroy();
    this.#relays.delete(relay);
  }
}
