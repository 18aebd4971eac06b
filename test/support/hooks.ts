import { stopAllEmbedded } from "../../src/core/db/embedded";

// Whatever a suite leaves running, the run ends with no embedded PostgreSQL server behind it.
export const mochaHooks = {
  async afterAll(): Promise<void> {
    await stopAllEmbedded();
  },
};
