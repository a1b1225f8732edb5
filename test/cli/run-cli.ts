// Runs the `tandem` command line as a user would, under the Node that runs the tests.

import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../../cli/tandem.ts", import.meta.url));

export function runCli(args: readonly string[]): { code: number; output: string } {
  try {
    return { code: 0, output: execFileSync(process.execPath, [cli, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
  } catch (error) {
    const failed = error as { status: number; stdout: string; stderr: string };
    return { code: failed.status, output: failed.stdout + failed.stderr };
  }
}
