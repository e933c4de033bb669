// The Markdown of answers, parsed into plain data that the view renders as elements: no HTML
// string is ever built or injected, so an answer cannot add markup, scripts or styles, and links
// are shown as text (sources open through the passage panel's Open, and nothing else).
//
// Supported: paragraphs, headings (#), bulleted and numbered lists, fenced code blocks, and inline
// `code`, **strong** and *emphasis*. Anything else stays as the text it is.

export type Inline = { text: string } | { code: string } | { strong: Inline[] } | { em: Inline[] };
export type Block =
  | { kind: "p"; source: string }
  | { kind: "h"; level: number; source: string }
  | { kind: "ul" | "ol"; items: string[] }
  | { kind: "code"; code: string };

/** The blocks of a text: blank lines end paragraphs; fences hold code as it is. */
export function blocks(text: string): Block[] {
  const out: Block[] = [];
  const lines = text.split("\n");
  let para: string[] = [];
  const flush = () => {
    if (para.length) out.push({ kind: "p", source: para.join("\n") });
    para = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*```/.test(line)) {
      flush();
      const code: string[] = [];
      for (i++; i < lines.length && !/^\s*```/.test(lines[i]!); i++) code.push(lines[i]!);
      out.push({ kind: "code", code: code.join("\n") });
      continue;
    }
    const heading = /^(#{1,4})\s+(.*)$/.exec(line);
    const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d{1,3}[.)]\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      out.push({ kind: "h", level: heading[1]!.length, source: heading[2]! });
    } else if (bullet || numbered) {
      flush();
      const kind = bullet ? "ul" : "ol";
      const item = (bullet ?? numbered)![1]!;
      const last = out[out.length - 1];
      if (last && last.kind === kind) last.items.push(item);
      else out.push({ kind, items: [item] });
    } else if (!line.trim()) {
      flush();
    } else {
      para.push(line);
    }
  }
  flush();
  return out;
}

/** The inline runs of a line: `code` first (nothing inside it is Markdown), then **strong** and *em*. */
export function inlines(text: string): Inline[] {
  const out: Inline[] = [];
  const re = /`([^`\n]+)`|\*\*([^*\n]+?)\*\*|(?<![\w*])\*([^*\s][^*\n]*?)\*(?![\w*])/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    if (m[1] != null) out.push({ code: m[1] });
    else if (m[2] != null) out.push({ strong: inlines(m[2]) });
    else out.push({ em: inlines(m[3]!) });
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}
