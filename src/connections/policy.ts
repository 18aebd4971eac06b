/**
 * Who may connect to a row someone else holds. The original let anyone take over anyone's row,
 * silently; here the board says which it is:
 * - exclusive: one person at a time; an occupied row is refused;
 * - takeover: one person at a time, and someone else may take the row over, but only by asking
 *   for it explicitly (the dashboard asks for confirmation) and always with an audit record;
 * - shared: up to N people at once.
 */
export type BoardPolicy = "exclusive" | "takeover" | "shared";

export interface Occupant {
  user: string;
  /** Epoch ms. */
  since: number;
}

export type BoardAction = { action: "connect" | "takeover" | "release"; user: string };

export type Decision =
  | { kind: "add"; user: string }
  | { kind: "replace"; user: string; displaced: Occupant[] }
  | { kind: "remove"; user: string; occupant: Occupant }
  | { kind: "nothing" }
  | { kind: "refuse"; code: "occupied" | "full" | "not-connected" | "takeover-needed" | "no-takeover"; holders: Occupant[]; max?: number };

/** What an action does to a row's occupants under a policy; pure, so every rule is tested alone. */
export function decide(policy: BoardPolicy, maxPerRow: number, occupants: readonly Occupant[], request: BoardAction): Decision {
  const mine = occupants.find((o) => sameUser(o.user, request.user));
  const others = occupants.filter((o) => !sameUser(o.user, request.user));
  switch (request.action) {
    case "release":
      return mine ? { kind: "remove", user: request.user, occupant: mine } : { kind: "refuse", code: "not-connected", holders: others };
    case "connect":
      if (mine) return { kind: "nothing" };
      if (policy === "shared") {
        const max = Math.max(1, maxPerRow);
        return occupants.length < max ? { kind: "add", user: request.user } : { kind: "refuse", code: "full", holders: others, max };
      }
      if (others.length === 0) return { kind: "add", user: request.user };
      return { kind: "refuse", code: policy === "takeover" ? "takeover-needed" : "occupied", holders: others };
    case "takeover":
      if (policy !== "takeover") return { kind: "refuse", code: "no-takeover", holders: others };
      if (others.length === 0) return mine ? { kind: "nothing" } : { kind: "add", user: request.user };
      return { kind: "replace", user: request.user, displaced: others };
  }
}

/** A refusal as the person who asked reads it; `time` shows a moment in the board's zone. */
export function describeRefusal(decision: Extract<Decision, { kind: "refuse" }>, user: string, time: (ms: number) => string): string {
  const holders = decision.holders.map((h) => `${h.user} (since ${time(h.since)})`).join(", ");
  switch (decision.code) {
    case "not-connected":
      return `${user} is not connected to this row`;
    case "full":
      return `${holders} ${decision.holders.length === 1 ? "is" : "are"} connected; this row allows ${decision.max} at once`;
    case "takeover-needed":
      return `${holders} is connected: take over?`;
    case "no-takeover":
      return `this board does not allow taking a row over${holders ? `: ${holders} is connected` : ""}`;
    case "occupied":
      return `${holders} is connected`;
  }
}

export function sameUser(a: string, b: string): boolean {
  return a.localeCompare(b, undefined, { sensitivity: "accent" }) === 0;
}
