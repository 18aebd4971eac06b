/** One change of a node's saved configuration, from `version - 1` to `version`. */
export interface ConfigMigration {
  version: number;
  up(config: Record<string, unknown>): Record<string, unknown>;
}

/**
 * Brings a saved node configuration to the current version. A config without a `version` is
 * version 1, the first release. Steps run in order and never in place: the input is not mutated.
 */
export function migrateConfig<T extends object>(config: T, migrations: readonly ConfigMigration[]): T & { version: number } {
  let current = { ...config } as Record<string, unknown>;
  let version = Number(current.version) || 1;
  for (const step of [...migrations].sort((a, b) => a.version - b.version)) {
    if (step.version <= version) continue;
    if (step.version !== version + 1) throw new Error(`no migration from config version ${version} to ${step.version}`);
    current = { ...step.up(current), version: step.version };
    version = step.version;
  }
  return { ...(current as T), version };
}

/**
 * A list of names once kept under another field: the old value where the new field is missing or
 * empty (an editor that dropped the old field saves the new one empty), as text, one per line.
 */
export function carriedList(current: unknown, legacy: unknown): string {
  if (typeof current === "string" && current.trim()) return current;
  if (typeof legacy === "string") return legacy;
  if (Array.isArray(legacy) && legacy.every((v) => typeof v === "string")) return legacy.join("\n");
  return typeof current === "string" ? current : "";
}
