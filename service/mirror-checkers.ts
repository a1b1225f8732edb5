// A mirror module's application checkers (`<check>`: tcp, ping, intf, ip, module), run on
// the primary while its application is up: a failed probe is the core's `app-failed`
// input (action restart or stopstart: the core restarts the application and counts it
// toward maxloop, past which the module stops and hands over) or a stop of the module
// (action stop). The schedule lives here; what follows a failure is the core's.
//
// Not run for mirror modules yet (logged once at start): custom checkers, when="pre" and
// when="second", actions wait and noaction (noaction is logged on failure).

import type { ModuleConfig } from "../core/config/module-config.ts";
import { probeOf } from "../core/module/lifecycle.ts";
import type { MirrorReadiness, MirrorRole } from "../core/mirror/messages.ts";
import type { ProbePort } from "../core/ports.ts";
import type { LogEntry } from "../core/types.ts";

export interface MirrorCheckerHooks {
  /** The module's role and readiness now. */
  readonly state: () => { readonly role: MirrorRole; readonly readiness: MirrorReadiness };
  readonly appFailed: (why: string) => void;
  readonly stop: (why: string) => void;
  readonly log: (entry: LogEntry) => void;
}

/** Starts the module's checkers; the answer stops them. */
export function startMirrorCheckers(module: ModuleConfig, probes: ProbePort, hooks: MirrorCheckerHooks): () => void {
  const timers: NodeJS.Timeout[] = [];
  for (const checker of module.checkers) {
    if (checker.kind === "splitbrain") continue; // the core's witness
    const probe = probeOf(checker);
    if (probe === null || (checker.when !== "prim" && checker.when !== "both") || checker.action === "wait") {
      hooks.log({ level: "warn", event: "mirror.checker_not_run", fields: { checker: `${checker.kind}.${checker.ident}`, when: checker.when, action: checker.action } });
      continue;
    }
    let probing = false;
    const tick = () => {
      const { role, readiness } = hooks.state();
      if (probing || (role !== "PRIM" && role !== "ALONE") || readiness !== "Ready") return;
      probing = true;
      probes.probe(probe, Math.max(1, Math.round(checker.timeoutMs)), (result) => {
        probing = false;
        if (result.up) return;
        const now = hooks.state();
        if ((now.role !== "PRIM" && now.role !== "ALONE") || now.readiness !== "Ready") return;
        const why = `checker ${checker.kind}.${checker.ident} failed: ${result.detail}`;
        hooks.log({ level: "warn", event: "mirror.checker_failed", fields: { checker: `${checker.kind}.${checker.ident}`, action: checker.action, detail: result.detail } });
        if (checker.action === "stop") hooks.stop(why);
        else if (checker.action === "restart" || checker.action === "stopstart") hooks.appFailed(why);
      });
    };
    const timer = setInterval(tick, Math.max(50, checker.intervalMs));
    timer.unref();
    timers.push(timer);
  }
  return () => {
    for (const timer of timers) clearInterval(timer);
  };
}
