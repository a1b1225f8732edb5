// Where the node service keeps its configuration, state, logs and control socket; each
// overridable by a flag or an environment variable, so tests and labs can run several.

import { resolve } from "node:path";

export interface ServicePaths {
  readonly configDir: string;
  readonly stateDir: string;
  readonly logDir: string;
  readonly socket: string;
}

export function servicePaths(flags: { config?: string | undefined; state?: string | undefined; logDir?: string | undefined; socket?: string | undefined }): ServicePaths {
  const environment = process.env;
  return {
    configDir: resolve(flags.config ?? environment["TANDEM_CONFIG_DIR"] ?? "/etc/tandem"),
    stateDir: resolve(flags.state ?? environment["TANDEM_STATE_DIR"] ?? "/var/lib/tandem"),
    logDir: resolve(flags.logDir ?? environment["TANDEM_LOG_DIR"] ?? "/var/log/tandem"),
    socket: resolve(flags.socket ?? environment["TANDEM_SOCKET"] ?? "/run/tandem/tandem.sock"),
  };
}
