import { MICROSOFT_DEMO_APP } from "../../sandbox";
import { alwaysOn, disabled, scheduled } from "../../sandbox/graph";
import type { DemoProfile } from "../environment";

export const type = "graph-app";

/** The sandbox's Entra ID app, and a few mailboxes to watch (added once; the sandbox keeps them). */
export const profile: DemoProfile = (_node, env) => {
  const graph = env.sandbox.graph;
  if (!graph.user("adele.vance@contoso.test")) {
    const tomorrow = new Date(Date.now() + 86_400_000);
    graph.addUser({ mail: "adele.vance@contoso.test", displayName: "Adele Vance", replies: alwaysOn("I'm at the partner summit, back on Monday. For urgent matters, call the front desk.") });
    graph.addUser({ mail: "alex.wilber@contoso.test", displayName: "Alex Wilber", replies: scheduled("On leave tomorrow.", tomorrow, new Date(tomorrow.getTime() + 86_400_000)) });
    graph.addUser({ mail: "megan.bowen@contoso.test", displayName: "Megan Bowen", replies: disabled() });
    graph.addUser({ mail: "zoe.muller@contoso.test", displayName: "Zoë Müller", replies: alwaysOn("Je suis absente jusqu'au 2 décembre, « merci » de votre patience.") });
    graph.addUser({ mail: "onprem.user@contoso.test", displayName: "On-premises User", mailbox: false });
  }
  return {
    config: { tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: env.sandbox.url, graphUrl: `${env.sandbox.url}/microsoft/graph` },
    credentials: { clientSecret: MICROSOFT_DEMO_APP.clientSecret },
  };
};
