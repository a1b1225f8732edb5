#!/usr/bin/env node
// The `tandem` command line: operate the local node service, check and package modules,
// run the simulator.

// Each command is imported when it runs: the node service must not carry the simulator
// and fast-check in its memory, nor a quick `tandem state` wait for them to load.
import { operateVerbs, type OperateVerb } from "./operate-verbs.ts";

const usage = `usage: tandem <command> [options]
  state      modules' states on this node: tandem state [-m MODULE] [--json] [-q: exit code 0 STOP, 1 WAIT, 2 UP]
  start      start a module on this node: tandem start -m MODULE [--wait]; also stop, restart (its
             application only) and stopstart
  set        what a custom checker reports: tandem set -m MODULE -r custom.IDENT -v up|down
  log        a module's last events: tandem log -m MODULE [-n COUNT] [--json]
  prim, second, swap, primforce
                       a mirror module's roles: tandem prim -m MODULE [fullsync] [--wait]
  -H n1,n2   with any of these: run it on the nodes named ('*': all), through the local service
  daemon     run the node service in the foreground (systemd: packaging/tandem.service)
  config  check a configuration: tandem config check [DIR] (cluster.xml and modules' userconfig.xml)
  module  export, install and list module packages (NAME.safe, as SafeKit ships them): tandem module --help
  sim     run farm fault plans, a replay or a named scenario in the simulator (tandem sim --help)
  demo    watch a 3-node farm lose and regain a node, in the simulator
  lab     a farm of real node services in Docker containers: tandem lab demo|up|status|get|kill|start|pause|unpause|partition|heal|down`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  const print = (line: string) => console.log(line);
  switch (command) {
    case "sim":
      return (await import("./sim-command.ts")).simCommand(rest, print);
    case "demo":
      return (await import("./demo-command.ts")).demoCommand(rest, print);
    case "config":
      return (await import("./config-command.ts")).configCommand(rest, print);
    case "module":
      return (await import("./module-command.ts")).moduleCommand(rest, print);
    case "lab":
      return (await import("./lab-command.ts")).labCommand(rest, print);
    case "daemon":
      return (await import("./daemon-command.ts")).daemonCommand(rest, print);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      print(usage);
      return command === undefined ? 2 : 0;
    default:
      if ((operateVerbs as readonly string[]).includes(command)) return (await import("./operate-command.ts")).operateCommand(command as OperateVerb, rest, print);
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
