// One lab per host: the lab's containers, network and names are global to the Docker
// engine, so two test files that bring it up, kill its nodes or remove it must not run
// at once (vitest runs files in parallel). Each takes this lock for its whole run: a
// directory made atomically, holding the owner's pid; a lock whose owner is dead is taken
// over.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { beforeAll, beforeEach } from "vitest";

const lockDir = "/tmp/tandem-lab-test.lock";

function ownerAlive(): boolean {
  try {
    const pid = Number(readFileSync(`${lockDir}/pid`, "utf8"));
    if (!Number.isInteger(pid) || pid <= 0) return false;
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, someone else's. No pid file: being written, or its writer died.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Waits until this process holds the lab; the function returned releases it. */
export async function lockLab(what: string, timeoutMs = 1_200_000): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  let staleChecks = 0;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(`${lockDir}/pid`, String(process.pid));
      writeFileSync(`${lockDir}/what`, what);
      return () => rmSync(lockDir, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    // No live owner twice in a row, a second apart: the lock is stale.
    if (ownerAlive()) staleChecks = 0;
    else if (++staleChecks >= 2) {
      rmSync(lockDir, { recursive: true, force: true });
      staleChecks = 0;
      continue;
    }
    if (Date.now() > deadline) {
      let holder = "";
      try {
        holder = readFileSync(`${lockDir}/what`, "utf8");
      } catch {}
      throw new Error(`the Docker lab stayed taken by another test (${holder || "unknown"}, ${lockDir}) for ${timeoutMs / 1_000} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

/** A lab test file's setup, run once before its tests: when it throws, every test of the
 *  file fails with its error and the last lines of `progress` (a failing beforeAll would
 *  have vitest report them as skipped). */
export function setUpOrFailEach(progress: readonly string[], setup: () => Promise<void>, timeoutMs = 900_000): void {
  let failure: Error | null = null;
  beforeAll(async () => {
    try {
      await setup();
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
      failure.message += progress.length === 0 ? "" : `\nprogress so far:\n${progress.slice(-20).join("\n")}`;
    }
  }, timeoutMs);
  beforeEach(() => {
    if (failure !== null) throw failure;
  });
}
