// One conversation on screen: its stored messages and the turn being asked, whose answer is put
// together token by token until `ask` resolves with the stored message.

import type { Answer, AppError, Message } from "../api";

export type Turn = {
  requestId: string;
  conversation: string;
  question: string;
  content: string;
  /** `stopping`: Stop was pressed and `ask` has not resolved yet. */
  status: "streaming" | "stopping" | "failed";
  error: AppError | null;
  startedAt: number;
};

export type ChatState = {
  /** The conversation shown; a new chat already has its id, chosen here. */
  conversation: string;
  messages: Message[];
  /** Notes of answers given in this session (`Answer.notes`), by message id. */
  notes: Record<number, string[]>;
  turn: Turn | null;
};

export type ChatAction =
  | { type: "open"; conversation: string; messages: Message[] }
  | { type: "start"; requestId: string; question: string; now: number }
  | { type: "token"; requestId: string; text: string }
  | { type: "stopping"; requestId: string }
  | { type: "answered"; requestId: string; answer: Answer; messages: Message[] | null }
  | { type: "failed"; requestId: string; error: AppError }
  | { type: "patch"; message: number; patch: Partial<Message> };

export function newChat(conversation: string): ChatState {
  return { conversation, messages: [], notes: {}, turn: null };
}

export function isBusy(s: ChatState): boolean {
  return s.turn !== null && s.turn.status !== "failed";
}

export function chatReducer(s: ChatState, a: ChatAction): ChatState {
  switch (a.type) {
    case "open":
      // The notes of this session's answers stay (the shell does not store them).
      return { ...s, conversation: a.conversation, messages: a.messages, turn: null };
    case "start":
      if (isBusy(s)) return s;
      return {
        ...s,
        turn: {
          requestId: a.requestId,
          conversation: s.conversation,
          question: a.question,
          content: "",
          status: "streaming",
          error: null,
          startedAt: a.now,
        },
      };
    case "token":
      if (!s.turn || s.turn.requestId !== a.requestId || s.turn.status === "failed") return s;
      return { ...s, turn: { ...s.turn, content: s.turn.content + a.text } };
    case "stopping":
      if (!s.turn || s.turn.requestId !== a.requestId || s.turn.status !== "streaming") return s;
      return { ...s, turn: { ...s.turn, status: "stopping" } };
    case "answered": {
      if (!s.turn || s.turn.requestId !== a.requestId) return s;
      const { answer } = a;
      let messages = a.messages;
      if (!messages) {
        // Without a reload, show the question and the stored answer as they are.
        const question: Message = {
          id: -answer.message.id,
          role: "user",
          content: s.turn.question,
          state: "complete",
          error: null,
          model: null,
          grounding: null,
          verified: false,
          citations: [],
          unsupported: [],
          draft: null,
          draftNote: null,
          createdAt: s.turn.startedAt,
        };
        messages = [...s.messages, question, answer.message];
      }
      const notes = answer.notes.length ? { ...s.notes, [answer.message.id]: answer.notes } : s.notes;
      return { ...s, conversation: answer.conversation || s.conversation, messages, notes, turn: null };
    }
    case "failed":
      if (!s.turn || s.turn.requestId !== a.requestId) return s;
      return { ...s, turn: { ...s.turn, status: "failed", error: a.error } };
    case "patch":
      return { ...s, messages: s.messages.map((m) => (m.id === a.message ? { ...m, ...a.patch } : m)) };
  }
}

/** Splits answer text into plain runs and `[n]` citation markers that exist in `numbers`. */
export type Piece = { text: string } | { cite: number };

export function splitCitations(text: string, numbers: Set<number>): Piece[] {
  const out: Piece[] = [];
  const re = /\[(\d{1,3})\]/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const n = Number(m[1]);
    if (!numbers.has(n)) continue;
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ cite: n });
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

/** A readable sentence for a note of `Answer.notes` (the shell's notes are short tags or sentences). */
export function noteText(note: string): string {
  const known: Record<string, string> = {
    keyword_only: "Keyword search only: passages were found by their words, not their meaning.",
    "keyword search only": "Keyword search only: passages were found by their words, not their meaning.",
    no_model: "No chat model is configured: these are the passages that answer it best.",
    "no model configured": "No chat model is configured: these are the passages that answer it best.",
    not_covered: "Your documents do not cover this question.",
  };
  return known[note] ?? known[note.toLowerCase()] ?? note;
}
