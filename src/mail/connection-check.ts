import { isIP } from "node:net";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import XOAuth2 from "nodemailer/lib/xoauth2";
import { CheckFailure, ConnectionChecks } from "../core/check-report";
import { EntraAppTokenSource } from "../graph/app-token";
import type { SmtpSettings } from "./transport";

/** The scope of an app token for Exchange Online's SMTP (client-credentials grant). */
export const OUTLOOK_SMTP_SCOPE = "https://outlook.office365.com/.default";

/**
 * The smtp-connection node's checks: connect through the configured security (the same as the
 * relay's verify()), log in (password or XOAUTH2), and the sender's address accepted in MAIL FROM.
 * Nothing is sent: the envelope is reset before any data.
 */
export async function checkSmtp(settings: SmtpSettings, checks: ConnectionChecks): Promise<void> {
  const port = settings.port || (settings.security === "tls" ? 465 : 587);
  const security = settings.security === "tls" ? "TLS" : settings.security === "starttls" ? "STARTTLS" : "no encryption";
  const connection = new SMTPConnection({
    host: settings.host,
    port,
    secure: settings.security === "tls",
    requireTLS: settings.security === "starttls",
    ignoreTLS: settings.security === "none",
    tls: { rejectUnauthorized: settings.verifyCertificate, ...(settings.host && !isIP(settings.host) ? { servername: settings.host } : {}) },
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 8000,
    // A reply is a few lines: a server that sends more is not the one we look for.
    maxResponseSize: 64 * 1024,
  } as ConstructorParameters<typeof SMTPConnection>[0]);
  connection.on("error", () => undefined); // each step reports its own failure
  if (settings.host) checks.service(`${settings.host}:${port}`, connectFix(settings));
  try {
    const connected = await checks.run(`connect with ${security}`, connectFix(settings), async () => {
      if (!settings.host) throw new CheckFailure("no host is set", "fill in the SMTP server's host");
      await new Promise<void>((resolve, reject) => {
        // A failure before the greeting (a reply over the size limit) comes as an event only.
        connection.once("error", reject);
        connection.connect((err?: Error) => (err ? reject(err) : resolve()));
      });
      return `${settings.host}:${port}${connection.secure ? ", encrypted" : ""}`;
    });
    const loginCheck = settings.auth === "oauth2" ? "log in with XOAUTH2" : "log in";
    if (!connected) return checks.skipAll([loginCheck, "sender address"], "no connection");
    if (settings.auth === "none") {
      checks.skip(loginCheck, "this connection sends without logging in");
    } else {
      const loggedIn = await checks.run(loginCheck, loginFix(settings), async () => {
        const auth = settings.auth === "oauth2" ? await xoauth2(settings, checks.signal) : { user: settings.user ?? "", pass: settings.password ?? "" };
        if (settings.auth === "password" && (!settings.user || !settings.password)) throw new CheckFailure("the user or the password is empty", "fill in the user and password of the SMTP login");
        await new Promise<void>((resolve, reject) => connection.login(auth, (err?: Error | null) => (err ? reject(err) : resolve())));
        return `as ${settings.auth === "oauth2" ? settings.user || settings.sender : settings.user}`;
      });
      if (!loggedIn) return checks.skip("sender address", "not logged in");
    }
    await checks.run("sender address", `use a sender address this login may send as (in Microsoft 365: the mailbox itself, or Send As permission on it)`, async () => {
      if (!settings.sender) throw new CheckFailure("no sender address is set", "fill in the sender address");
      await acceptsSender(connection, settings.sender);
      return `${settings.sender} accepted`;
    });
  } finally {
    // A connection never opened (no host) has no socket to say goodbye on.
    try {
      connection.quit();
      connection.close();
    } catch {
      // nothing to close
    }
  }
}

/** MAIL FROM alone, then RSET: the server says whether it takes the sender, and nothing is sent. */
function acceptsSender(connection: SMTPConnection, sender: string): Promise<void> {
  if (/[\r\n<>]/.test(sender)) return Promise.reject(new CheckFailure(`"${sender}" is not an address`, "fill in the sender address alone, without a name or brackets"));
  // nodemailer has no public call for MAIL FROM alone (send() goes on to RCPT and DATA); these two
  // members are how its own commands queue a reply handler and go out.
  const raw = connection as unknown as { _responseActions: Array<(reply: string) => void>; _sendCommand(command: string): void };
  return new Promise<void>((resolve, reject) => {
    raw._responseActions.push((reply) => {
      const accepted = reply.startsWith("2");
      connection.reset((err?: Error | null) => {
        if (!accepted) reject(new CheckFailure(`the server refused ${sender} as the sender: ${reply.trim()}`, "use a sender address this login may send as"));
        else if (err) reject(err);
        else resolve();
      });
    });
    raw._sendCommand(`MAIL FROM:<${sender}>`);
  });
}

async function xoauth2(settings: SmtpSettings, signal: AbortSignal): Promise<{ oauth2: XOAuth2 }> {
  const oauth = settings.oauth;
  if (!oauth?.tenantId || !oauth.clientId || !oauth.clientSecret) {
    throw new CheckFailure("XOAUTH2 needs the tenant id, the client id and the client secret", "fill in the Entra ID app's tenant id, client id and secret");
  }
  const tokens = new EntraAppTokenSource({ tenantId: oauth.tenantId, clientId: oauth.clientId, clientSecret: oauth.clientSecret, authorityHost: oauth.loginHost, scope: OUTLOOK_SMTP_SCOPE, signal });
  const accessToken = await tokens.getAccessToken();
  return { oauth2: new XOAuth2({ user: settings.user || settings.sender, accessToken }) };
}

function connectFix(settings: SmtpSettings): string {
  if (settings.security === "tls") return "check the host and port (465 for TLS), or choose STARTTLS for port 587";
  if (settings.security === "starttls") return "check the host and port (587 for STARTTLS); a server without STARTTLS needs security 'none' on a trusted network";
  return "check the host and port, and that Node-RED may reach the server";
}

function loginFix(settings: SmtpSettings): string {
  if (settings.auth === "oauth2") return "give the Entra ID app the SMTP.SendAsApp permission with admin consent and register its service principal in Exchange Online (New-ServicePrincipal, Add-MailboxPermission)";
  return "check the user and password of the SMTP login (an app password where the account has two-factor sign-in)";
}
