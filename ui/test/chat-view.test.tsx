import { afterEach, describe, expect, it } from "vitest";
import { act } from "preact/test-utils";
import type { Answer, Citation, Message } from "../src/api";
import { App } from "../src/app";
import { $, $$, baseHandlers, click, fakeShell, key, mount, resetShell, settle, tid, type, until } from "./helpers";

afterEach(resetShell);

const m = (p: Partial<Message>): Message => ({
  id: 1, role: "assistant", content: "", state: "complete", error: null, model: null, grounding: null,
  verified: false, citations: [], unsupported: [], draft: null, draftNote: null, createdAt: 0, ...p,
});

/** A shell whose `ask` streams only when the test says so, and ends when cancelled. */
function streamingShell(extra: Record<string, (a: Record<string, unknown>) => unknown> = {}) {
  let channel: { onmessage: (m: unknown) => void } | null = null;
  let resolve: ((a: Answer) => void) | null = null;
  let request: { requestId: string; conversation: string; question: string } | null = null;
  let streamed = "";
  const stored: Message[] = [];
  const shell = fakeShell({
    ...baseHandlers(),
    messages: () => stored,
    ask: (a) => {
      channel = a.onEvent as typeof channel;
      request = a.request as typeof request;
      return new Promise<Answer>((r) => (resolve = r));
    },
    cancel_ask: () => {
      const message = m({ id: 2, content: streamed, state: "cancelled" });
      stored.push(m({ id: 1, role: "user", content: request!.question }), message);
      resolve!({ conversation: request!.conversation, message, notes: [] });
      return null;
    },
    ...extra,
  });
  return {
    shell,
    request: () => request!,
    token: async (text: string) => {
      streamed += text;
      await act(() => channel!.onmessage({ type: "token", text }));
      await settle(1);
    },
    finish: async (answer: Answer) => {
      stored.push(m({ id: 1, role: "user", content: request!.question }), answer.message);
      await act(() => resolve!(answer));
      await settle();
    },
  };
}

async function openChat() {
  await mount(<App initialView="chat" />);
  return $(tid("composer")) as HTMLTextAreaElement;
}

describe("chat", () => {
  it("streams the answer into the message as tokens arrive; Stop cancels and keeps what arrived", async () => {
    const s = streamingShell();
    const composer = await openChat();
    await type(composer, "How do changes work?");
    await key(composer, "Enter");
    const req = s.request();
    expect(req.question).toBe("How do changes work?");
    expect(req.requestId).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(req.conversation).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(composer.value).toBe("");

    const answer = () => $(`${tid("message")}[data-role="assistant"] ${tid("message-body")}`);
    await s.token("Anyone ");
    expect(answer().textContent).toContain("Anyone");
    await s.token("may propose");
    expect(answer().textContent).toContain("Anyone may propose");
    expect($$(tid("send"))).toHaveLength(0);

    await click($(tid("stop")));
    expect(s.shell.called("cancel_ask")[0]!.args).toEqual({ requestId: req.requestId });
    await until(() => $(`${tid("message")}[data-state="cancelled"]`));
    expect($(tid("message-state")).textContent).toContain("Stopped");
    expect(answer().textContent).toBe("Anyone may propose");
    expect($(tid("send"))).toBeTruthy();
  });

  it("Esc stops the answer", async () => {
    const s = streamingShell();
    const composer = await openChat();
    await type(composer, "q");
    await key(composer, "Enter");
    await s.token("Partial");
    await key(composer, "Escape");
    expect(s.shell.called("cancel_ask")).toHaveLength(1);
  });

  it("Enter sends, Shift+Enter does not", async () => {
    const s = streamingShell();
    const composer = await openChat();
    await type(composer, "line one");
    await key(composer, "Enter", { shiftKey: true });
    expect(s.shell.called("ask")).toHaveLength(0);
    await key(composer, "Enter");
    expect(s.shell.called("ask")).toHaveLength(1);
  });

  it("shows a failed ask with its error", async () => {
    fakeShell({
      ...baseHandlers(),
      ask: () => {
        throw { code: "chat_server", message: "the chat server refused the request (401)" };
      },
    });
    const composer = await openChat();
    await type(composer, "q");
    await key(composer, "Enter");
    await until(() => $(`${tid("message")}[data-state="failed"]`));
    expect($(tid("message-state")).textContent).toContain("the chat server refused the request (401)");
  });

  it("shows notes plainly and numbered citations that open the passage", async () => {
    const cites: Citation[] = [
      { number: 1, chunkId: 31, sourceId: 3, sourceTitle: "handbook.md", location: "Handbook › Changes", quote: "two reviewers approve it", origin: "/home/ana/handbook.md", deleted: false },
      { number: 2, chunkId: null, sourceId: null, sourceTitle: "Source deleted", location: "", quote: null, origin: null, deleted: true },
    ];
    const s = streamingShell({
      open_source: () => null,
      source_detail: () => ({
        source: { id: 3 },
        chunks: [{ id: 31, ordinal: 0, text: "A change needs two reviewers approve it from other teams.", location: { label: "Handbook › Changes", lineStart: 4, lineEnd: 9, page: null }, tokenCount: 12 }],
      }),
    });
    const composer = await openChat();
    await type(composer, "Who approves?");
    await key(composer, "Enter");
    await s.token("Two reviewers [1]. Drafts [2].");
    await s.finish({
      conversation: s.request().conversation,
      message: m({ id: 2, content: "Two reviewers [1]. Drafts [2].", citations: cites }),
      notes: ["keyword search only"],
    });
    expect($(tid("message-note")).textContent).toMatch(/Keyword search only/);

    const chips = $$(tid("citation-chip"));
    expect(chips.map((c) => c.textContent)).toEqual(["1", "2"]);
    await click(chips[0]!);
    await until(() => $(tid("passage-quote")).dataset.whole === "true");
    const panel = $(tid("passage-panel"));
    expect($(tid("passage-source"), panel).textContent).toBe("handbook.md");
    expect($(tid("passage-location"), panel).textContent).toContain("Handbook › Changes");
    expect($(tid("passage-origin"), panel).textContent).toBe("/home/ana/handbook.md");
    await click($(tid("reveal-source"), panel));
    expect(s.shell.called("open_source")[0]!.args).toEqual({ source: 3, reveal: true });
    expect($(tid("passage-quote"), panel).textContent).toBe("A change needs two reviewers approve it from other teams.");
    expect($("mark", panel).textContent).toBe("two reviewers approve it");
    expect(s.shell.called("source_detail")[0]!.args).toEqual({ source: 3 });

    await click($$(tid("citation-chip"))[1]!);
    expect($(tid("passage-deleted")).textContent).toMatch(/forgotten/);
    expect($(tid("passage-source")).textContent).toBe("Source deleted");
    await click($(tid("passage-close")));
    expect($$(tid("passage-panel"))).toHaveLength(0);
  });

  it("marks unsupported sentences and keeps a replaced model answer behind a toggle", async () => {
    const cite: Citation = { number: 1, chunkId: 31, sourceId: 3, sourceTitle: "garden.md", location: "Garden", quote: "in May", origin: "/home/ana/garden.md", deleted: false };
    const s = streamingShell();
    const composer = await openChat();
    await type(composer, "When?");
    await key(composer, "Enter");
    const invented = { sentence: "Bob helped on 3 June [1].", facts: ["Bob", "3", "June"] };
    const reason = "the model's answer stated facts that its passages do not";
    await s.finish({
      conversation: s.request().conversation,
      message: m({
        id: 2,
        content: "In May [1]. Bob helped on 3 June [1]. It rained.",
        citations: [cite],
        unsupported: [invented],
        draft: "In 1984, at /etc/garden.d [1].",
        draftNote: reason,
      }),
      notes: [reason],
    });
    const mark = $(tid("unsupported"));
    expect(mark.textContent).toBe("Bob helped on 3 June 1.");
    expect(mark.getAttribute("title")).toBe("Not in the cited passages: Bob, 3, June");
    expect(mark.tabIndex).toBe(0);
    const answer = $(`${tid("message")}[data-role="assistant"]`);
    expect($(tid("message-body"), answer).textContent).toBe("In May 1. Bob helped on 3 June 1. It rained.");
    // The reason is said once, with the toggle.
    expect($$(tid("message-note"))).toHaveLength(0);
    expect($(tid("draft-note")).textContent).toContain(reason);
    expect($$(tid("draft-text"))).toHaveLength(0);
    await click($(tid("draft-toggle")));
    expect($(tid("draft-text")).textContent).toBe("In 1984, at /etc/garden.d [1].");
  });

  it("renders an answer's Markdown as elements, and its HTML only as text", async () => {
    const s = streamingShell();
    const composer = await openChat();
    await type(composer, "How?");
    await key(composer, "Enter");
    const content = "Run `apt update` **first**.\n\n- <img src=x onerror=alert(1)>\n- then wait";
    await s.finish({ conversation: s.request().conversation, message: m({ id: 2, content }), notes: [] });
    const body = $(tid("message-body"), $(`${tid("message")}[data-role="assistant"]`));
    expect($$("img", body)).toHaveLength(0);
    expect($("code", body).textContent).toBe("apt update");
    expect($("strong", body).textContent).toBe("first");
    expect($$("li", body).map((li) => li.textContent)).toEqual(["<img src=x onerror=alert(1)>", "then wait"]);
  });

  it("approves and revises an answer as verified", async () => {
    const s = streamingShell({ verify_message: (a) => ({ id: 1, question: "q", answer: a.revised ?? "x", createdAt: 0 }) });
    const composer = await openChat();
    await type(composer, "q");
    await key(composer, "Enter");
    await s.finish({ conversation: s.request().conversation, message: m({ id: 2, content: "Original." }), notes: [] });
    await click($(tid("revise-answer")));
    await type($(tid("revise-editor")) as HTMLTextAreaElement, "Better.");
    await click($(tid("revise-save")));
    expect(s.shell.called("verify_message")[0]!.args).toEqual({ conversation: s.request().conversation, message: 2, revised: "Better." });
    expect($(tid("verified-badge"))).toBeTruthy();
    expect($(tid("revised-text")).textContent).toContain("Better.");
  });
});
