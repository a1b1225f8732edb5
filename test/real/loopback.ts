// Helpers for tests of the real network drivers on one host: every node gets its own
// loopback address (Linux routes all of 127.0.0.0/8 to lo), in a /24 drawn at random per
// test file, with a random port below the kernel's ephemeral range, so that test files
// running in parallel neither collide with each other nor with sockets bound to port 0.

import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClockPort } from "../../core/ports.ts";
import type { NodeId } from "../../core/types.ts";
import { WireKey, type PayloadCodec } from "../../drivers/real/wire.ts";
import { isTestMessage, type TestMessage } from "../contracts/datagram-contract.ts";

export interface LoopbackNet {
  /** 127.a.b.<host> */
  addr(host: number): string;
  readonly port: number;
}

export function loopbackNet(): LoopbackNet {
  const a = 16 + Math.floor(Math.random() * 224);
  const b = Math.floor(Math.random() * 256);
  return { addr: (host) => `127.${a}.${b}.${host}`, port: 20_000 + Math.floor(Math.random() * 12_000) };
}

export const testKey = new WireKey(Buffer.from("tandem test cluster key, 32 byte"));
export const otherKey = new WireKey(Buffer.from("another cluster's key, 32 bytes!"));

export const testCodec: PayloadCodec<TestMessage> = {
  encode: (message) => message,
  decode: (value) => (isTestMessage(value) ? value : null),
};

export async function waitFor(condition: () => boolean, limitMs: number): Promise<boolean> {
  const deadlineMs = performance.now() + limitMs;
  while (!condition()) {
    if (performance.now() >= deadlineMs) return false;
    await sleep(2);
  }
  return true;
}

/** A ClockPort whose time only moves when told, for rate limits; timers never fire. */
export function manualClock(): ClockPort & { nowMsValue: number } {
  return {
    nowMsValue: 0,
    nowMs() {
      return this.nowMsValue;
    },
    arm: () => {},
    cancel: () => {},
  };
}

/** Node names of test clusters: n1 < n2 < n3 in string order, so n1 connects to both. */
export const testNodes: readonly NodeId[] = ["n1", "n2", "n3"];
