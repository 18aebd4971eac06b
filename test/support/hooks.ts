import { stopAllEmbedded } from "../../src/core/db/embedded";

// Whatever a suite leaves running, the run ends with no embedded database child behind it.
export const mochaHooks = {
  async afterAll(): Promise<void> {
    await stopAllEmbedded();
  },
};
