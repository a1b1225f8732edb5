// Part 1 of the mirror fault plans (test/sim/mirror-fault-plans.ts).

import { mirrorFaultPlans } from "./mirror-fault-plans.ts";

mirrorFaultPlans(1);
