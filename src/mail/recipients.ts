import { InputError } from "../core/errors";

const ADDRESS = /^[^\s@<>(),;:"]+@[^\s@<>(),;:"]+\.[^\s@<>(),;:"]+$/;

/** "a@x.org, b@y.org; c@z.org" or an array, as a clean list of addresses; refuses anything that is not one. */
export function addressList(value: unknown, what: string): string[] {
  const items = Array.isArray(value) ? value : typeof value === "string" ? value.split(/[,;\n]/) : value === undefined || value === null ? [] : [value];
  const addresses = items.map((v) => (typeof v === "string" ? v.trim() : "")).filter(Boolean);
  for (const address of addresses) {
    if (!ADDRESS.test(address)) throw new InputError(`${what}: "${address.slice(0, 80)}" is not an e-mail address`);
  }
  if (items.length !== addresses.length) throw new InputError(`${what} holds an empty or non-text entry`);
  return [...new Set(addresses.map((a) => a.toLowerCase()))];
}

/**
 * Who a mail goes to: the node's own recipients, or `msg.to` when every address in it is on the
 * allowed list (addresses, or "@domain" for a whole domain). The relay is never an open relay.
 */
export function recipientsFor(msgTo: unknown, nodeTo: string[], allowed: string[]): string[] {
  if (msgTo === undefined || msgTo === null || msgTo === "") {
    if (!nodeTo.length) throw new InputError("no recipient: set one in the mail-relay node or send msg.to");
    return nodeTo;
  }
  const wanted = addressList(msgTo, "msg.to");
  if (!wanted.length) throw new InputError("msg.to holds no address");
  const refused = wanted.filter((address) => !allowed.some((rule) => (rule.startsWith("@") ? address.endsWith(rule) : address === rule)));
  if (refused.length) throw new InputError(`msg.to may only name allowed recipients; not allowed: ${refused.slice(0, 5).join(", ")}`);
  return wanted;
}

/** The allowed list as written in the node: addresses and "@domain" rules. */
export function allowedList(text: string | undefined): string[] {
  return (text ?? "")
    .split(/[,;\s]+/)
    .map((r) => r.trim().toLowerCase())
    .filter(Boolean)
    .map((r) => (r.startsWith("*@") ? r.slice(1) : r));
}
