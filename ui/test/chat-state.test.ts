import { describe, expect, it } from "vitest";
import { AppError, type Answer, type Message } from "../src/api";
import { chatReducer, isBusy, newChat, noteText, splitCitations } from "../src/state/chat";

const msg = (p: Partial<Message>): Message => ({
  id: 1, role: "assistant", content: "", state: "complete", error: null, model: null, grounding: null,
  verified: false, citations: [], unsupported: [], draft: null, draftNote: null, createdAt: 0, ...p,
});

describe("streaming message assembly", () => {
  it("appends tokens in order and ignores tokens of another request", () => {
    let s = chatReducer(newChat("c1"), { type: "start", requestId: "r1", question: "Why?", now: 1 });
    for (const t of ["Because ", "the ", "handbook ", "says so."]) s = chatReducer(s, { type: "token", requestId: "r1", text: t });
    s = chatReducer(s, { type: "token", requestId: "old", text: "NOISE" });
    expect(s.turn).toMatchObject({ question: "Why?", content: "Because the handbook says so.", status: "streaming" });
    expect(isBusy(s)).toBe(true);
  });

  it("refuses a second question while one is answered", () => {
    const s = chatReducer(newChat("c1"), { type: "start", requestId: "r1", question: "a", now: 1 });
    expect(chatReducer(s, { type: "start", requestId: "r2", question: "b", now: 2 })).toBe(s);
  });

  it("on cancel keeps what arrived and ends as a stored cancelled message", () => {
    let s = chatReducer(newChat("c1"), { type: "start", requestId: "r1", question: "q", now: 1 });
    s = chatReducer(s, { type: "token", requestId: "r1", text: "Partial" });
    s = chatReducer(s, { type: "stopping", requestId: "r1" });
    expect(s.turn!.status).toBe("stopping");
    s = chatReducer(s, { type: "token", requestId: "r1", text: " answer" });
    const stored = msg({ id: 8, content: "Partial answer", state: "cancelled" });
    const answer: Answer = { conversation: "c1", message: stored, notes: [] };
    s = chatReducer(s, { type: "answered", requestId: "r1", answer, messages: null });
    expect(s.turn).toBeNull();
    expect(isBusy(s)).toBe(false);
    expect(s.messages.map((m) => [m.role, m.content, m.state])).toEqual([
      ["user", "q", "complete"],
      ["assistant", "Partial answer", "cancelled"],
    ]);
  });

  it("keeps a failed ask on screen with its error, and frees the composer", () => {
    let s = chatReducer(newChat("c1"), { type: "start", requestId: "r1", question: "q", now: 1 });
    s = chatReducer(s, { type: "failed", requestId: "r1", error: new AppError("chat_server", "server refused") });
    expect(s.turn).toMatchObject({ status: "failed" });
    expect(s.turn!.error!.message).toBe("server refused");
    expect(isBusy(s)).toBe(false);
  });

  it("keeps the notes of an answer by its message id", () => {
    let s = chatReducer(newChat("c1"), { type: "start", requestId: "r1", question: "q", now: 1 });
    const answer: Answer = { conversation: "c1", message: msg({ id: 5 }), notes: ["keyword search only"] };
    s = chatReducer(s, { type: "answered", requestId: "r1", answer, messages: [msg({ id: 4, role: "user" }), msg({ id: 5 })] });
    expect(s.notes[5]).toEqual(["keyword search only"]);
    expect(noteText("keyword search only")).toMatch(/Keyword search only/);
    expect(noteText("something new")).toBe("something new");
  });

  it("splits citation markers that exist and leaves others as text", () => {
    expect(splitCitations("A [1] and [3], not [2].", new Set([1, 3]))).toEqual([
      { text: "A " },
      { cite: 1 },
      { text: " and " },
      { cite: 3 },
      { text: ", not [2]." },
    ]);
  });
});
