// The mirror's volume (drivers/real/mirror-volume.ts) when its service dies: the mount is
// made without auto_unmount, so the directory stays dead (ENOTCONN: an application still
// running can write nothing, not even underneath), and the next volume over the same
// directory detaches the dead mount and mounts again. The first volume lives in a child
// process (sharing this mount namespace) that is killed with SIGKILL.
//
// Needs root and /dev/fuse; fails, never skips, without them.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MirrorVolume, volumeDirState } from "../../drivers/real/mirror-volume.ts";
import { fuseUnavailable } from "../../native/fuse.ts";

const volumeModule = fileURLToPath(new URL("../../drivers/real/mirror-volume.ts", import.meta.url));
let scratch = "";

beforeAll(() => {
  const unavailable = fuseUnavailable();
  expect(unavailable, unavailable?.message).toBeNull();
  scratch = mkdtempSync(join(tmpdir(), "tandem-volume-"));
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** A child process that opens a volume over `dir` and says so, then waits to be killed. */
function volumeInChild(dir: string): Promise<{ kill: () => Promise<void> }> {
  const script = `import { MirrorVolume } from ${JSON.stringify(volumeModule)};
const volume = new MirrorVolume({ dir: ${JSON.stringify(dir)}, intercept: () => {}, log: () => {} });
volume.open();
console.log("open");
setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("open")) resolve({ kill: () => new Promise((done) => (child.kill("SIGKILL"), child.once("exit", () => done()))) });
    });
    child.once("exit", (code) => reject(new Error(`the child exited (${code}) before its volume was open`)));
  });
}

describe("a mirror volume whose service dies", () => {
  it("leaves the directory dead, and the next volume detaches it and mounts again", async () => {
    const dir = join(scratch, "tree");
    mkdirSync(dir);
    writeFileSync(join(dir, "kept"), "data");
    const child = await volumeInChild(dir);
    expect(readFileSync(join(dir, "kept"), "utf8")).toBe("data");
    await child.kill();
    // Dead: nothing reaches the directory underneath any more.
    expect(() => statSync(join(dir, "kept"))).toThrow(expect.objectContaining({ code: "ENOTCONN" }));
    expect(() => writeFileSync(join(dir, "after-death"), "x")).toThrow(expect.objectContaining({ code: "ENOTCONN" }));
    // The next service takes it for its replicated directory (found by the Docker lab's
    // double-failure scenario: it once refused it as "not a directory" and never started).
    expect(volumeDirState(dir)).toBe("dead-mount");
    const events: string[] = [];
    const volume = new MirrorVolume({ dir, intercept: () => {}, log: (event) => events.push(event) });
    volume.open();
    try {
      expect(events).toContain("mirror.volume_detached_dead_mount");
      expect(readFileSync(join(dir, "kept"), "utf8")).toBe("data");
      expect(() => writeFileSync(join(dir, "new"), "x")).toThrow(expect.objectContaining({ code: "EROFS" }));
    } finally {
      volume.close();
    }
    expect(statSync(join(dir, "after-death"), { throwIfNoEntry: false })).toBeUndefined();
    expect(volumeDirState(dir)).toBe("directory");
    expect(volumeDirState(join(dir, "kept"))).toBe("unusable");
    expect(volumeDirState(join(dir, "missing"))).toBe("unusable");
  }, 30_000);
});
