import { describe, expect, it } from "vitest";
import { blocks, inlines } from "../src/markdown";

describe("answer Markdown", () => {
  it("parses paragraphs, headings, lists and fenced code", () => {
    const text = "# Steps\nFirst do this\nand that [1].\n\n- one\n- two [2]\n1. first\n\n```\n$ apt update\n<b>x</b>\n```\nDone.";
    expect(blocks(text)).toEqual([
      { kind: "h", level: 1, source: "Steps" },
      { kind: "p", source: "First do this\nand that [1]." },
      { kind: "ul", items: ["one", "two [2]"] },
      { kind: "ol", items: ["first"] },
      { kind: "code", code: "$ apt update\n<b>x</b>" },
      { kind: "p", source: "Done." },
    ]);
  });

  it("parses code, strong and emphasis, and leaves everything else as text", () => {
    expect(inlines("Run `apt update`, **then wait**, *now*, 2*3*4 <script>x</script>")).toEqual([
      { text: "Run " },
      { code: "apt update" },
      { text: ", " },
      { strong: [{ text: "then wait" }] },
      { text: ", " },
      { em: [{ text: "now" }] },
      { text: ", 2*3*4 <script>x</script>" },
    ]);
    expect(inlines("`**not bold**`")).toEqual([{ code: "**not bold**" }]);
  });
});
