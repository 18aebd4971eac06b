// What monitoring systems post to a webhook, from their documented shapes.

/** Prometheus Alertmanager `webhook_config`, payload version "4" (notify/webhook/webhook.go). */
export interface AlertmanagerNotification {
  version?: string;
  groupKey?: string;
  /** How many alerts the sender left out (its `max_alerts`). */
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
  /** summary, description, message (kubernetes-mixin), runbook_url, or any other. */
  annotations?: Record<string, string>;
  startsAt?: string;
  /** "0001-01-01T00:00:00Z" while the alert fires. */
  endsAt?: string;
  generatorURL?: string;
  fingerprint?: string;
}

/**
 * Grafana Alerting's webhook contact point: Alertmanager's shape plus `orgId`, `title`, `state`,
 * `message` (the rendered default template) and per-alert links and values (Grafana's webhook
 * notifier documentation).
 */
export interface GrafanaNotification extends AlertmanagerNotification {
  orgId?: number;
  title?: string;
  /** "alerting" or "ok". */
  state?: string;
  message?: string;
  alerts: GrafanaAlert[];
}

export interface GrafanaAlert extends AlertmanagerAlert {
  silenceURL?: string;
  dashboardURL?: string;
  panelURL?: string;
  imageURL?: string;
  values?: Record<string, number | string> | null;
  valueString?: string;
}

/** Uptime Kuma's "Webhook" notification, JSON body (server/notification-providers/webhook.js). */
export interface UptimeKumaNotification {
  /** `[name] [🔴 Down] heartbeat msg`, or the text of a test or certificate notice. */
  msg: string;
  heartbeat?: UptimeKumaHeartbeat | null;
  monitor?: UptimeKumaMonitor | null;
}

/** Heartbeat.toJSON() with the zone fields that Monitor.sendNotification adds. */
export interface UptimeKumaHeartbeat {
  monitorID?: number;
  /** 0 down, 1 up, 2 pending, 3 maintenance. */
  status?: number;
  /** UTC, "YYYY-MM-DD HH:mm:ss.SSS". */
  time?: string;
  msg?: string;
  ping?: number | null;
  important?: boolean;
  /** Seconds since the previous heartbeat. */
  duration?: number;
  retries?: number;
  downCount?: number;
  /** The Kuma server's zone, its offset ("+01:00") and `time` on its clock ("YYYY-MM-DD HH:mm:ss"). */
  timezone?: string;
  timezoneOffset?: string;
  localDateTime?: string;
}

/** Monitor.toJSON() without sensitive data: the fields that say what is monitored. */
export interface UptimeKumaMonitor {
  id?: number;
  name?: string;
  description?: string | null;
  pathName?: string;
  /** "http", "keyword", "json-query", "ping", "port", "dns", "push", "docker", "gamedig", "steam", "mqtt", … */
  type?: string;
  /** "https://" when the type has no URL. */
  url?: string;
  hostname?: string | null;
  port?: number | null;
  keyword?: string | null;
  invertKeyword?: boolean;
  dns_resolve_type?: string;
  dns_resolve_server?: string;
  dns_last_result?: string | null;
  docker_container?: string;
  docker_host?: number | null;
  mqttTopic?: string;
  game?: string | null;
  tags?: Array<{ name?: string; value?: string }>;
}
