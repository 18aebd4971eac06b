import os from "node:os";

/** How this process is named to the others on one database: the host and the pid, so two on one machine differ. */
export function instanceName(): string {
  return `${os.hostname()} pid ${process.pid}`;
}
