import { isIP } from "node:net";
import { ConfidentialClientApplication } from "@azure/msal-node";
import nodemailer, { Transporter } from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool";
import { ConfigError, PipelineError } from "../core/errors";
import { redact, registerSecret } from "../core/redact";

/** The settings of an SMTP config node. */
export interface SmtpSettings {
  host: string;
  port: number;
  /** "starttls": plain connection upgraded before AUTH (587); "tls": TLS from the first byte (465). */
  security: "starttls" | "tls" | "none";
  /** Check the server's certificate (off only for a test server with a self-signed one). */
  verifyCertificate: boolean;
  auth: "password" | "oauth2" | "none";
  user?: string;
  password?: string;
  /** Office 365 through XOAUTH2, with a client-credentials token from Microsoft identity. */
  oauth?: { tenantId: string; clientId: string; clientSecret: string; loginHost?: string };
  /** The From address (and the domain of each Message-ID). */
  sender: string;
  /** Connections kept open; each carries any number of messages. */
  poolSize: number;
}

/** What an smtp-connection config node offers: its settings, from which each relay opens its pool. */
export interface SmtpProvider {
  readonly type: "smtp-connection";
  settings(): SmtpSettings;
}

/** One mail as the relay hands it to the server. */
export interface OutgoingMail {
  messageId: string;
  date: Date;
  to: string[];
  subject: string;
  text: string;
}

export interface MailTransport {
  send(mail: OutgoingMail): Promise<void>;
  close(): Promise<void>;
}

const OFFICE365_SCOPE = "https://outlook.office365.com/.default";

/**
 * nodemailer's pooled SMTP transport: a few connections kept open, each sending any number of
 * messages (a new connection costs a TLS handshake, an AUTH and, on some servers, a greeting delay).
 * Every mail keeps the Message-ID and Date it was given when queued, so a retry is the same mail.
 */
export class SmtpTransport implements MailTransport {
  private readonly transporter: Transporter<SMTPPool.SentMessageInfo>;

  constructor(readonly settings: SmtpSettings) {
    if (!settings.host) throw new ConfigError("the SMTP connection has no host");
    if (!settings.sender) throw new ConfigError("the SMTP connection has no sender address");
    registerSecret(settings.password);
    registerSecret(settings.oauth?.clientSecret);
    const options: SMTPPool.Options = {
      pool: true,
      host: settings.host,
      port: settings.port || (settings.security === "tls" ? 465 : 587),
      secure: settings.security === "tls",
      requireTLS: settings.security === "starttls",
      ignoreTLS: settings.security === "none",
      tls: { rejectUnauthorized: settings.verifyCertificate, ...(isIP(settings.host) ? {} : { servername: settings.host }) },
      maxConnections: Math.max(1, settings.poolSize || 5),
      maxMessages: Infinity,
      connectionTimeout: 15_000,
      greetingTimeout: 15_000,
      socketTimeout: 60_000,
      disableFileAccess: true,
      disableUrlAccess: true,
    };
    if (settings.auth === "password") {
      if (!settings.user) throw new ConfigError("the SMTP connection uses a password but has no user");
      options.auth = { user: settings.user, pass: settings.password ?? "" };
    } else if (settings.auth === "oauth2") {
      const provision = office365Tokens(settings);
      options.auth = { type: "OAuth2", user: settings.user || settings.sender, provisionCallback: provision } as SMTPPool.Options["auth"];
    }
    this.transporter = nodemailer.createTransport(options);
    // An idle pooled connection that breaks reports here; the next send reconnects.
    this.transporter.on("error", () => undefined);
  }

  async send(mail: OutgoingMail): Promise<void> {
    await this.transporter.sendMail({
      from: this.settings.sender,
      to: mail.to,
      subject: mail.subject,
      text: mail.text,
      messageId: mail.messageId,
      date: mail.date,
      disableFileAccess: true,
      disableUrlAccess: true,
    });
  }

  async close(): Promise<void> {
    this.transporter.close();
  }
}

/** nodemailer's XOAUTH2 provision callback, fed by msal-node's client-credentials grant (cached by msal). */
function office365Tokens(settings: SmtpSettings) {
  const oauth = settings.oauth;
  if (!oauth?.tenantId || !oauth.clientId || !oauth.clientSecret) {
    throw new ConfigError("OAuth2 for Office 365 needs the tenant id, the client id and the client secret of an app allowed to send as the mailbox");
  }
  const authority = `https://login.microsoftonline.com/${oauth.tenantId}`;
  const loginHost = oauth.loginHost?.replace(/\/+$/, "");
  const app = new ConfidentialClientApplication({
    auth: {
      clientId: oauth.clientId,
      clientSecret: oauth.clientSecret,
      authority,
      // A stand-in identity host (tests, the demo) is reached through metadata, as msal wants https authorities.
      ...(loginHost
        ? {
            authorityMetadata: JSON.stringify({
              token_endpoint: `${loginHost}/${oauth.tenantId}/oauth2/v2.0/token`,
              issuer: `${loginHost}/${oauth.tenantId}/v2.0`,
              authorization_endpoint: `${loginHost}/${oauth.tenantId}/oauth2/v2.0/authorize`,
              jwks_uri: `${loginHost}/${oauth.tenantId}/discovery/v2.0/keys`,
            }),
          }
        : {}),
    },
  });
  return (_user: string, renew: boolean, callback: (err: Error | null, token?: string, expires?: number) => void) => {
    app.acquireTokenByClientCredential({ scopes: [OFFICE365_SCOPE], skipCache: renew }).then(
      (result) => {
        if (!result?.accessToken) return callback(new PipelineError("Microsoft identity gave no access token for SMTP", { code: "EOAUTH2" }));
        registerSecret(result.accessToken);
        callback(null, result.accessToken, result.expiresOn?.getTime());
      },
      (err: Error) => callback(new PipelineError(`Microsoft identity refused the SMTP token request: ${redact(err.message)}`, { cause: err, code: "EOAUTH2" })),
    );
  };
}
