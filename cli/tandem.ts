#!/usr/bin/env node
// The `tandem` command line. Subcommands: sim, demo (more arrive with the node service).

import { simCommand } from "./sim-command.ts";
import { demoCommand } from "./demo-command.ts";
import { configCommand } from "./config-command.ts";
import { moduleCommand } from "./module-command.ts";

const usage = `usage: tandem <command> [options]
  config  check a configuration: tandem config check [DIR] (cluster.xml and modules' userconfig.xml)
  module  export, install and list module packages (NAME.safe, as SafeKit ships them): tandem module --help
  sim     run farm fault plans, a replay or a named scenario in the simulator (tandem sim --help)
  demo    watch a 3-node farm lose and regain a node, in the simulator`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  const print = (line: string) => console.log(line);
  switch (command) {
    case "sim":
      return simCommand(rest, print);
    case "demo":
      return demoCommand(rest, print);
    case "config":
      return configCommand(rest, print);
    case "module":
      return moduleCommand(rest, print);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      print(usage);
      return command === undefined ? 2 : 0;
    default:
      print(`tandem: unknown command "${command}"\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Operating errors (bad flags, bad tokens) print their message; anything else is a bug.
    console.error(`tandem: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(error instanceof Error && error.name === "AssertionError" ? 70 : 2);
  },
);
