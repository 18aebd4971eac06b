import { Clock, systemClock } from "../core/clock";

export interface ActionBudgetOptions {
  /** Actions a client may send at once. */
  burst: number;
  /** Actions a client regains each second. */
  perSecond: number;
  clock?: Clock;
  /** Clients remembered at most; quiet ones are forgotten first. */
  maxClients?: number;
}

/** `allowed`, or refused: `flood-started` the first time in a row, so the flood is reported once. */
export type BudgetVerdict = "allowed" | "flood-started" | "refused";

/**
 * A token bucket per client (a dashboard connection): a person's clicks always fit, a script's
 * flood of takes and releases does not, and each flood is reported once, not once per action.
 * A client whose bucket has filled up again has stopped: its next flood is reported anew.
 */
export class ActionBudget {
  private readonly clients = new Map<string, { tokens: number; at: number; flooding: boolean }>();
  private readonly clock: Clock;

  constructor(private readonly options: ActionBudgetOptions) {
    this.clock = options.clock ?? systemClock;
  }

  take(client: string): BudgetVerdict {
    const now = this.clock.now();
    const { burst, perSecond } = this.options;
    let state = this.clients.get(client);
    if (state) {
      state.tokens = Math.min(burst, state.tokens + ((now - state.at) / 1000) * perSecond);
      state.at = now;
      if (state.tokens >= burst) state.flooding = false;
    } else {
      this.forgetQuietClients(now);
      state = { tokens: burst, at: now, flooding: false };
      this.clients.set(client, state);
    }
    if (state.tokens >= 1) {
      state.tokens -= 1;
      return "allowed";
    }
    if (state.flooding) return "refused";
    state.flooding = true;
    return "flood-started";
  }

  /** Keeps the map bounded: clients whose bucket is full again are as good as new. */
  private forgetQuietClients(now: number): void {
    if (this.clients.size < (this.options.maxClients ?? 10_000)) return;
    const { burst, perSecond } = this.options;
    for (const [client, state] of this.clients) {
      if (state.tokens + ((now - state.at) / 1000) * perSecond >= burst) this.clients.delete(client);
    }
    // Still full of busy clients: the oldest one goes.
    if (this.clients.size >= (this.options.maxClients ?? 10_000)) this.clients.delete(this.clients.keys().next().value!);
  }
}
