/**
 * A PEM block whose line breaks were lost or turned into spaces (pasted into a one-line field, or
 * kept that way by an older flow) made whole again; one with headers (an encrypted key) is left
 * as it is. Node's crypto reads only PEM with its lines.
 */
export function wholePem(text: string): string {
  const normal = text.trim().replace(/\r\n?/g, "\n");
  return normal.replace(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g, (block: string, label: string, body: string) => {
    if (body.includes(":")) return block;
    const base64 = body.replace(/\s+/g, "");
    return `-----BEGIN ${label}-----\n${(base64.match(/.{1,64}/g) ?? []).join("\n")}\n-----END ${label}-----`;
  });
}
