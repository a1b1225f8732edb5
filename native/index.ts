// Typed access to the native addon (native/src, built into native/build by `npm ci`).
// Loaded on first use, so that code which never touches the kernel (the simulator, the
// core's tests) runs on a machine where the addon was not built.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** One libnftables context and its netlink socket, alive until close() or process exit. */
export interface NftContext {
  /** Runs `commands` (nft syntax, several lines) as ONE atomic transaction; returns what
   *  they printed. Throws an Error with code NFT_FAILED and libnftables' message. */
  run(commands: string): string;
  /** Frees the context: tables it created with `flags owner` are deleted by the kernel. */
  close(): void;
}

export interface ArpFrame {
  readonly interface: string;
  readonly operation: "request" | "reply";
  /** Ethernet source and destination. */
  readonly frameSource: string;
  readonly frameDestination: string;
  /** The ARP payload. */
  readonly senderMac: string;
  readonly senderIp: string;
  readonly targetMac: string;
  readonly targetIp: string;
}

export interface ArpResponderStats {
  readonly requests: number;
  readonly replies: number;
  readonly errors: number;
  readonly lastError: string | null;
}

/** Answers ARP requests for `vips` on one interface from a native thread. */
export interface ArpResponder {
  stats(): ArpResponderStats;
  /** Stops answering before it returns; idempotent. */
  close(): void;
}

export interface NativeBinding {
  readonly NftContext: new () => NftContext;
  /** Replies carry `senderMac` in the payload and the interface's own MAC as frame source. */
  readonly ArpResponder: new (interfaceName: string, vips: readonly string[], senderMac: string) => ArpResponder;
  /** RTM_NEWADDR; throws with code EEXIST when the address is already there. */
  addressAdd(interfaceName: string, address: string, prefixLength: number): void;
  /** RTM_DELADDR; throws with code EADDRNOTAVAIL when the address is not there. */
  addressDelete(interfaceName: string, address: string, prefixLength: number): void;
  sendArp(frame: ArpFrame): void;
  interfaceMac(interfaceName: string): string;
}

/** A system error from the addon: `code` is the errno name (EEXIST, EPERM, ...) or NFT_FAILED. */
export interface NativeError extends Error {
  readonly code?: string;
  readonly errno?: number;
}

const here = dirname(fileURLToPath(import.meta.url));
/** Where node-gyp puts the addon: beside this file when run from the sources, and at
 *  ../../native/build when this file runs compiled into dist/native/ (npm run build). */
export const nativeAddonPath = [join(here, "build", "Release", "tandem_native.node"), join(here, "..", "..", "native", "build", "Release", "tandem_native.node")].find(existsSync) ?? join(here, "build", "Release", "tandem_native.node");

let binding: NativeBinding | null = null;

/** The addon; throws a message saying how to build it when it is missing. */
export function nativeBinding(): NativeBinding {
  if (binding !== null) return binding;
  if (!existsSync(nativeAddonPath)) {
    throw new Error(`the native addon is not built (${nativeAddonPath} is missing): run \`npm ci\` or \`node native/build.ts\` (needs libnftables-dev, libmnl-dev, g++, make, python3)`);
  }
  binding = createRequire(import.meta.url)(nativeAddonPath) as NativeBinding;
  return binding;
}
