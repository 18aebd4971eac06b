import { GoToSandbox, GoToSandboxOptions } from "./goto";
import { GraphSandbox } from "./graph";
import { MicrosoftSandbox } from "./microsoft";
import { SandboxServer } from "./server";
import { TeamleaderSandbox, TeamleaderSandboxOptions } from "./teamleader";

export interface SandboxOptions {
  goto?: GoToSandboxOptions;
  teamleader?: TeamleaderSandboxOptions;
}

/** Every provider's stand-in on one server. */
export class Sandbox {
  readonly server = new SandboxServer();
  readonly goto: GoToSandbox;
  readonly teamleader: TeamleaderSandbox;
  readonly microsoft: MicrosoftSandbox;
  readonly graph: GraphSandbox;

  constructor(options: SandboxOptions = {}) {
    this.goto = new GoToSandbox(this.server, options.goto);
    this.teamleader = new TeamleaderSandbox(this.server, options.teamleader);
    this.microsoft = new MicrosoftSandbox(this.server);
    this.graph = new GraphSandbox(this.server, this.microsoft);
  }

  get url(): string {
    return this.server.url;
  }

  /** The endpoint overrides a config node needs to talk to this sandbox instead of the cloud. */
  get endpoints() {
    const url = this.url;
    return {
      gotoAuth: `${url}/goto/auth`,
      gotoApi: `${url}/goto/api`,
      teamleaderAuth: `${url}/teamleader/auth`,
      teamleaderApi: `${url}/teamleader/api`,
      microsoftLogin: url,
      graph: `${url}/microsoft/graph`,
    };
  }

  listen(port = 0, host = "127.0.0.1"): Promise<string> {
    return this.server.listen(port, host);
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

export { SandboxServer } from "./server";
export { GOTO_DEMO_CLIENT } from "./goto";
export { TEAMLEADER_DEMO_CLIENT } from "./teamleader";
export { MICROSOFT_DEMO_APP } from "./microsoft";
