// What monitoring systems post to a webhook, from their documented shapes.

/** Prometheus Alertmanager `webhook_config`, payload version "4" (notify/webhook/webhook.go). */
export interface AlertmanagerNotification {
  version?: string;
  groupKey?: string;
  truncatedAlerts?: number;
  status: "firing" | "resolved" | string;
  receiver?: string;
  groupLabels?: Record<string, string>;
  commonLabels?: Record<string, string>;
  commonAnnotations?: Record<string, string>;
  externalURL?: string;
  alerts: AlertmanagerAlert[];
}

export interface AlertmanagerAlert {
  status: "firing" | "resolved" | string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt?: string;
  /** "0001-01-01T00:00:00Z" while the alert fires. */
  endsAt?: string;
  generatorURL?: string;
  fingerprint?: string;
}

/**
 * Grafana Alerting's webhook contact point: Alertmanager's shape plus `orgId`, `title`, `state`,
 * `message` and per-alert links and values. (`title`, `state` and `message` are recalled from
 * Grafana's documentation, not checked against a live Grafana.)
 */
export interface GrafanaNotification extends AlertmanagerNotification {
  orgId?: number;
  title?: string;
  state?: string;
  message?: string;
  alerts: GrafanaAlert[];
}

export interface GrafanaAlert extends AlertmanagerAlert {
  silenceURL?: string;
  dashboardURL?: string;
  panelURL?: string;
  values?: Record<string, number | string> | null;
  valueString?: string;
}

/** Uptime Kuma's "Webhook" notification, JSON body (server/notification-providers/webhook.js). */
export interface UptimeKumaNotification {
  msg: string;
  heartbeat?: { monitorID?: number; status?: number; time?: string; msg?: string; ping?: number | null; important?: boolean; duration?: number; timezone?: string } | null;
  monitor?: { id?: number; name?: string; url?: string; hostname?: string; type?: string } | null;
}
