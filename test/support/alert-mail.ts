// Reads an alert mail's parts back into their fields, so tests can compare them one by one.

export interface MailSection {
  heading: string;
  rows: Array<[string, string]>;
}

/**
 * The text part: the title line, the rows before the first block, then each `== heading ==`
 * block. A row is `Label: value`, or `Label:` with its value's lines indented by two spaces.
 */
export function textSections(text: string): { title: string; sections: MailSection[]; notes: string[] } {
  const lines = text.replace(/\n$/, "").split("\n");
  const title = lines.shift()!;
  const sections: MailSection[] = [{ heading: "", rows: [] }];
  const notes: string[] = [];
  let fresh = false; // the last row is a bare `Label:` whose first indented line is still to come
  for (const line of lines) {
    const section = sections[sections.length - 1]!;
    const heading = /^== (.*) ==$/.exec(line);
    if (section.heading === "Notes") notes.push(line);
    else if (heading) {
      sections.push({ heading: heading[1]!, rows: [] });
      fresh = false;
    }
    else if (line.startsWith("  ") && section.rows.length) {
      const last = section.rows[section.rows.length - 1]!;
      last[1] = fresh ? line.slice(2) : `${last[1]}\n${line.slice(2)}`;
      fresh = false;
    } else if (line === "") continue;
    else if (/^[^ ][^:]*: /.test(line) || /^[^ ][^:]*:$/.test(line)) {
      const at = line.indexOf(":");
      section.rows.push([line.slice(0, at), line.slice(at + 1).trim()]);
      fresh = line.endsWith(":");
    } else notes.push(line);
  }
  return { title, sections: sections.filter((s) => s.heading !== "Notes"), notes };
}

/** The HTML part: the <h2> title and, per table, its <h3> heading (empty for the first) and rows as HTML. */
export function htmlSections(html: string): { title: string; sections: MailSection[] } {
  const title = /<h2[^>]*>([\s\S]*?)<\/h2>/.exec(html)?.[1] ?? "";
  const sections: MailSection[] = [];
  const parts = html.split(/(?=<h3)/);
  for (const part of parts) {
    const heading = /^<h3[^>]*>([\s\S]*?)<\/h3>/.exec(part)?.[1] ?? "";
    const rows = [...part.matchAll(/<tr><th[^>]*>([\s\S]*?)<\/th><td[^>]*>([\s\S]*?)<\/td><\/tr>/g)].map((m) => [m[1]!, m[2]!] as [string, string]);
    if (rows.length || heading) sections.push({ heading, rows });
  }
  return { title, sections };
}
