import { stringify } from "csv-stringify/sync";
import { ConfigError } from "../core/errors";

export interface CsvColumn {
  /** The row's property (dots reach into nested objects: `caller.name`). */
  key: string;
  header: string;
}

export interface CsvFormat {
  columns: CsvColumn[];
  /** Prefix cells that a spreadsheet would run as a formula with a quote (on by default). */
  neutraliseFormulas?: boolean;
}

/**
 * Columns from a setting such as `user, queue, startTime:Start` (key, or key:header), in order.
 * Blank means the given defaults.
 */
export function parseColumns(spec: string | undefined, defaults: readonly string[]): CsvColumn[] {
  const entries = (spec ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const columns = (entries.length ? entries : defaults).map((entry) => {
    const colon = entry.indexOf(":");
    const key = (colon < 0 ? entry : entry.slice(0, colon)).trim();
    const header = (colon < 0 ? key : entry.slice(colon + 1)).trim();
    if (!key) throw new ConfigError(`the column "${entry}" has no property name`);
    return { key, header: header || key };
  });
  if (columns.length === 0) throw new ConfigError("the CSV needs at least one column");
  return columns;
}

// Cells starting with these are run by Excel, LibreOffice and Google Sheets as formulas (OWASP's
// "CSV injection"); tab and carriage return start one in some of them too.
const FORMULA_START = /^[=+\-@\t\r]/;
// A plain signed number (an E.164 phone number, a negative amount) is no formula: keep it as it is.
const PLAIN_NUMBER = /^[+-]?\d+(\.\d+)?$/;

// Every character some common reader ends a line at: CR and LF; vertical tab, form feed, the file,
// group and record separators, NEL, and the Unicode line and paragraph separators (Python's
// splitlines, JavaScript's line terminators, Unicode-aware editors and importers).
const LINE_BREAKS = "\\r\\n\\v\\f\\x1c\\x1d\\x1e\\u0085\\u2028\\u2029";
// A line inside a cell (after any such break) is read as a row of its own by a lax reader.
const FORMULA_AFTER_BREAK = new RegExp(`([${LINE_BREAKS}])(?=[=+\\-@\\t])`, "g");
// A cell holding any line break is quoted, so no reader sees a new row inside it.
const NEEDS_QUOTES = new RegExp(`[${LINE_BREAKS}]`);

/**
 * `=HYPERLINK(…)` → `'=HYPERLINK(…)`: shown as text by a spreadsheet, no longer run. Every line
 * of the cell is treated so, not only the first.
 */
export function neutraliseFormula(value: string): string {
  const first = FORMULA_START.test(value) && !PLAIN_NUMBER.test(value) ? `'${value}` : value;
  return first.replace(FORMULA_AFTER_BREAK, "$1'");
}

/**
 * Turns rows into CSV text with csv-stringify: CRLF line ends as the original export wrote them,
 * quotes where a cell needs them, and the header only when asked (the first part of a file).
 */
export function csvText(rows: readonly unknown[], format: CsvFormat, header: boolean): string {
  if (rows.length === 0 && !header) return "";
  const neutralise = format.neutraliseFormulas !== false;
  const asText = (value: string) => (neutralise ? neutraliseFormula(value) : value);
  return stringify(rows as any[], {
    header,
    columns: format.columns.map((c) => ({ key: c.key, header: asText(c.header) })),
    record_delimiter: "windows",
    quoted_match: NEEDS_QUOTES,
    cast: {
      string: asText,
      boolean: (value) => (value ? "true" : "false"),
      date: (value) => value.toISOString(),
      number: (value) => String(value),
      object: (value) => asText(JSON.stringify(value)),
    },
  });
}
