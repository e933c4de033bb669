import { afterEach, describe, expect, it } from "vitest";
import { AppError, api, isValidId, newId, toAppError } from "../src/api";
import { fakeShell, resetShell } from "./helpers";

afterEach(resetShell);

describe("api", () => {
  it("turns a {code, message} rejection into an AppError with the same code and message", async () => {
    fakeShell({
      set_setting: () => {
        throw { code: "invalid_setting", message: "invalid value for top_k: must be between 1 and 200" };
      },
    });
    const err = await api.setSetting("top_k", "0").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toBeInstanceOf(Error);
    expect((err as AppError).code).toBe("invalid_setting");
    expect((err as AppError).message).toBe("invalid value for top_k: must be between 1 and 200");
  });

  it("gives other rejections a readable message under the code 'unknown'", () => {
    expect(toAppError("window closed")).toMatchObject({ code: "unknown", message: "window closed" });
    expect(toAppError(new Error("boom"))).toMatchObject({ code: "unknown", message: "boom" });
    expect(toAppError(undefined)).toMatchObject({ code: "unknown", message: "Something went wrong." });
    const e = new AppError("cancelled", "stopped");
    expect(toAppError(e)).toBe(e);
  });

  it("sends arguments with the names of the contract", async () => {
    const shell = fakeShell({ jobs: () => [], ingest_paths: () => ({ queued: [], skipped: [] }), search: () => ({ hits: [], notes: [] }) });
    await api.jobs(true);
    await api.ingestPaths(3, ["/a.md", "/b"]);
    await api.search(3, "q", 5);
    expect(shell.calls.map((c) => [c.cmd, c.args])).toEqual([
      ["jobs", { activeOnly: true }],
      ["ingest_paths", { twin: 3, paths: ["/a.md", "/b"] }],
      ["search", { twin: 3, query: "q", topK: 5 }],
    ]);
  });

  it("streams ask tokens from its channel and resolves with the answer", async () => {
    const answer = { conversation: "c1", message: { id: 9 }, notes: [] };
    const shell = fakeShell({
      ask: (a) => {
        const ch = a.onEvent as { onmessage: (m: unknown) => void };
        ch.onmessage({ type: "token", text: "Hel" });
        ch.onmessage({ type: "token", text: "lo" });
        return answer;
      },
    });
    const got: string[] = [];
    const res = await api.ask({ requestId: "r1", twin: 1, conversation: "c1", question: "hi" }, (t) => got.push(t));
    expect(got.join("")).toBe("Hello");
    expect(res).toEqual(answer);
    expect(shell.calls[0]!.args.request).toEqual({ requestId: "r1", twin: 1, conversation: "c1", question: "hi" });
  });

  it("makes ids the shell accepts", () => {
    const ids = new Set(Array.from({ length: 50 }, newId));
    expect(ids.size).toBe(50);
    for (const id of ids) expect(isValidId(id)).toBe(true);
    expect(isValidId("has space")).toBe(false);
    expect(isValidId("x".repeat(65))).toBe(false);
  });
});
