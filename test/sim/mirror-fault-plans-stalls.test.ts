// The mirror fault plans that stall nodes too (test/sim/mirror-fault-plans.ts).

import { mirrorFaultPlans } from "./mirror-fault-plans.ts";

mirrorFaultPlans("stalls");
