import { decodeMirrorPlan, runMirrorPlan } from "./drivers/sim/mirror-plan.ts";
import { MirrorWorld } from "./drivers/sim/mirror-world.ts";
import { describeOp, pathsOf } from "./core/mirror/disk-ops.ts";
const watch = process.argv[3]!;
const orig = MirrorWorld.prototype.submit;
MirrorWorld.prototype.submit = function (op, done) {
  const hit = pathsOf(op).some((p) => p.includes(watch));
  const at = this.nowMs;
  if (hit) console.log(`${at.toFixed(3)} submit ${describeOp(op)}`);
  return orig.call(this, op, (result, node, gen) => {
    if (hit) console.log(`${this.nowMs.toFixed(3)}   answer ${describeOp(op)} -> ${result} by ${node} gen ${JSON.stringify(gen)}`);
    done(result, node, gen);
  });
};
const plan = decodeMirrorPlan(process.argv[2]!);
const r = runMirrorPlan(plan, { trace: true });
for (const line of (r.world as any).trace ?? []) if (String(line).includes(watch) || /swap|power|SECOND|ALONE|PRIM|sync|attach|install/.test(String(line))) console.log(line);
console.log(r.violations.slice(0, 3));
