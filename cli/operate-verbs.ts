// The verbs answered by the node service, apart so that `tandem` can route them without loading them.

export const operateVerbs = ["start", "stop", "restart", "stopstart", "state", "set", "log", "prim", "second", "swap", "primforce"] as const;
export type OperateVerb = (typeof operateVerbs)[number];
