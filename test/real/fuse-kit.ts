// What the tests of the FUSE mount share: the check that mounts can be made here (they
// fail, never skip, without root and /dev/fuse), and applications as child processes (I/O
// through an intercepting mount from the thread that answers it would wait for itself).

import { spawn } from "node:child_process";
import { join } from "node:path";
import { beforeAll, expect } from "vitest";
import { RealDisk } from "../../drivers/real/disk.ts";
import { fuseUnavailable, type FuseMount } from "../../native/fuse.ts";

/** Fails the file's tests, with the reason, where FUSE mounts cannot be made. */
export function requireFuse(): void {
  beforeAll(() => {
    const unavailable = fuseUnavailable();
    expect(unavailable, unavailable?.message).toBeNull();
  });
}

/** Runs `script` under /bin/sh in `cwd` (as `uid` when given); its exit code and stderr. */
export function shell(cwd: string, script: string, uid?: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("/bin/sh", ["-c", script], { cwd, stdio: ["ignore", "ignore", "pipe"], ...(uid === undefined ? {} : { uid, gid: uid }) });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

/** The real disk port over the tree under `fuse` (its directory handle), as the mirror
 *  applies intercepted operations; its metadata in `stateDir`. */
export function diskUnder(fuse: FuseMount, stateDir: string): RealDisk<null> {
  return new RealDisk<null>({
    root: `/proc/self/fd/${fuse.handleFd}`,
    metaFile: join(stateDir, "meta.json"),
    preserveDir: join(stateDir, "preserved"),
    codec: { encode: () => null, decode: () => null },
  });
}
