import { afterEach, describe, expect, it } from "vitest";
import type { Source } from "../src/api";
import { App } from "../src/app";
import { $, $$, baseHandlers, click, fakeShell, key, mount, resetShell, shellEvent, tid, until } from "./helpers";

afterEach(resetShell);

function row(id: number) {
  return $(`${tid("source-row")}[data-source-id="${id}"]`);
}

const ready: Source = {
  id: 3, twinId: 1, kind: "file", origin: "/docs/handbook.md", title: "handbook.md", mediaType: "text/markdown",
  byteSize: 2048, state: "ready", error: null, chunkCount: 4, createdAt: 0, updatedAt: 0,
};

describe("sources", () => {
  it("tells a new user what to do when nothing is learnt", async () => {
    fakeShell(baseHandlers());
    await mount(<App />);
    expect($(tid("welcome")).textContent).toMatch(/Drag files or whole folders/);
  });

  it("a drop queues the paths for the current twin and shows each file at once", async () => {
    const list: Source[] = [];
    const shell = fakeShell({
      ...baseHandlers(),
      sources: () => list,
      ingest_paths: (a) => {
        const queued = (a.paths as string[]).map((p, i) => ({ origin: p, sourceId: 10 + i, jobId: 20 + i, status: "queued" }));
        for (const q of queued) list.push({ ...ready, id: q.sourceId, origin: q.origin, title: q.origin.split("/").pop()!, state: "queued" });
        return { queued, skipped: [] };
      },
    });
    await mount(<App />);
    await window.doppelDrop!(["/home/a/plan.md", "/home/a/talk.vtt"]);
    await until(() => $$(tid("source-row")).length === 2);
    expect(shell.called("ingest_paths")[0]!.args).toEqual({ twin: 1, paths: ["/home/a/plan.md", "/home/a/talk.vtt"] });
    expect(row(10).dataset.state).toBe("queued");
    expect(row(10).textContent).toContain("plan.md");
    expect(row(11).textContent).toContain("talk.vtt");
  });

  it("renders only the rows in view of 50,000 sources, and a filter searches them all", async () => {
    const list: Source[] = Array.from({ length: 50_000 }, (_, i) => ({ ...ready, id: 100 + i, title: `page-${i}.html` }));
    const shell = fakeShell({ ...baseHandlers(), sources: () => list });
    await mount(<App />);
    await until(() => $(tid("source-list")).dataset.count === "50000");
    const shown = $$(tid("source-row"));
    expect(shown.length).toBeGreaterThan(5);
    expect(shown.length).toBeLessThan(60);
    // Newest first, and the list is as tall as all of its rows.
    expect(shown[0]!.dataset.sourceId).toBe("50099");
    expect(parseInt($(tid("source-list")).style.height)).toBe(50_000 * 66);
    expect($(tid("sources-summary")).textContent).toMatch(/50,?000 sources ready/);
    const filter = $(tid("source-filter")) as HTMLInputElement;
    filter.value = "page-49999.html";
    filter.dispatchEvent(new Event("input"));
    // The filter waits for typing to pause, then the shell finds the rows.
    await until(() => $$(tid("source-row")).length === 1, 500);
    expect(row(50_099).textContent).toContain("page-49999.html");
    expect(shell.called("source_page").at(-1)!.args).toMatchObject({ text: "page-49999.html", offset: 0 });
    // The page never held more than a few pages of rows.
    expect(shell.called("source_page").every((c) => (c.args.limit as number) <= 100)).toBe(true);
  });

  it("moves through the rows by keyboard, bringing the next ones into view", async () => {
    const list: Source[] = Array.from({ length: 500 }, (_, i) => ({ ...ready, id: 1 + i, title: `note-${i}.md` }));
    fakeShell({ ...baseHandlers(), sources: () => list });
    await mount(<App />);
    await until(() => $$(tid("source-row")).length > 0);
    $("button", row(500)).focus();
    await key(document.activeElement!, "ArrowDown");
    await until(() => document.activeElement === $("button", row(499)));
    await key(document.activeElement!, "End");
    await until(() => document.activeElement === $("button", row(1)), 200);
    await key(document.activeElement!, "Home");
    await until(() => document.activeElement === $("button", row(500)));
  });

  it("after an event reloads only the sources changed since the last reload", async () => {
    let list: Source[] = [{ ...ready, id: 7, title: "notes.pdf", state: "queued", chunkCount: 0, updatedAt: 1000 }];
    const shell = fakeShell({
      ...baseHandlers(),
      sources: () => list,
      sources_changed: (a) => ({
        sources: list.filter((s) => s.updatedAt >= (a.since as number)),
        cursor: Math.max(a.since as number, ...list.map((s) => s.updatedAt)),
        counts: { queued: 0, processing: 0, ready: 1, failed: 0 },
      }),
    });
    await mount(<App />);
    await until(() => row(7));
    expect(shell.called("sources_changed")).toHaveLength(0);
    const pages = shell.called("source_page").length;
    list = [{ ...list[0]!, title: "Field notes", state: "ready", chunkCount: 12, updatedAt: 2000 }];
    await shellEvent({ type: "jobDone", job: 3, source: 7, outcome: "ingested", chunks: 12 });
    // The reload waits for the quarter second that spaces reloads.
    await until(() => row(7).textContent!.includes("Field notes"), 1000);
    // From the cursor the first page gave, and the row is patched where it is: no page is read.
    expect(shell.called("sources_changed")[0]!.args).toEqual({ twin: 1, since: 1000 });
    expect(row(7).dataset.state).toBe("ready");
    expect(shell.called("source_page").length).toBe(pages);
    expect(shell.called("sources")).toHaveLength(0);
  });

  it("follows events: progress bar, failure with its reason, deletion", async () => {
    let list: Source[] = [
      { ...ready, id: 7, title: "notes.pdf", state: "queued", chunkCount: 0 },
      { ...ready, id: 8, title: "mail.mbox", state: "queued", chunkCount: 0 },
    ];
    const shell = fakeShell({ ...baseHandlers(), sources: () => list });
    await mount(<App />);
    await until(() => $$(tid("source-row")).length === 2);

    await shellEvent({ type: "jobStarted", job: 12, source: 7, attempt: 1 });
    await shellEvent({ type: "jobProgress", job: 12, done: 40, total: 96 });
    expect(row(7).dataset.state).toBe("processing");
    const bar = $(tid("source-progress"), row(7));
    expect(bar.getAttribute("aria-valuenow")).toBe("42");
    expect(row(7).textContent).toContain("40 of 96");

    await shellEvent({ type: "jobStarted", job: 13, source: 8, attempt: 3 });
    await shellEvent({ type: "jobFailed", job: 13, source: 8, code: "file_too_large", message: "file is too large: 212 MB", retryAt: null });
    expect(row(8).dataset.state).toBe("failed");
    expect($(tid("source-error"), row(8)).textContent).toBe("file is too large: 212 MB");

    list = list.filter((s) => s.id !== 7);
    await shellEvent({ type: "sourceDeleted", source: 7 });
    expect($$(`${tid("source-row")}[data-source-id="7"]`)).toHaveLength(0);
    // Progress events never cause reloads; a burst of state changes causes few.
    const before = shell.called("sources_changed").length;
    for (let i = 1; i <= 30; i++) await shellEvent({ type: "jobProgress", job: 13, done: i, total: 30 });
    expect(shell.called("sources_changed").length).toBe(before);
  });

  it("a file that waited for text recognition says why, then shows the page being read when read again", async () => {
    const waiting =
      'an image: its text is read only with text recognition on (Settings → "Read text in images and scans", or `doppel settings set ocr true`); it is read again then';
    const list: Source[] = [{ ...ready, id: 7, title: "scan.pdf", mediaType: null, state: "failed", chunkCount: 0, error: waiting }];
    fakeShell({ ...baseHandlers(), sources: () => list });
    await mount(<App />);
    await until(() => row(7));
    expect($(tid("source-error"), row(7)).textContent).toBe(waiting);

    // Turned on: the core queues it again and reads its pages; the old reason gives way to them.
    await shellEvent({ type: "jobQueued", job: 20, source: 7 });
    await shellEvent({ type: "jobStarted", job: 20, source: 7, attempt: 1 });
    await shellEvent({ type: "jobPages", job: 20, done: 2, total: 5 });
    expect(row(7).dataset.state).toBe("processing");
    expect(row(7).textContent).toContain("Reading text: page 3 of 5");
    expect($$(tid("source-error"), row(7))).toHaveLength(0);
    expect($(tid("source-progress"), row(7)).getAttribute("aria-valuenow")).toBe("40");
  });

  it("forgets a source only after the confirmation, which explains what is removed", async () => {
    let list = [ready];
    const shell = fakeShell({
      ...baseHandlers(),
      sources: () => list,
      source_detail: () => ({ source: ready, chunks: [] }),
      delete_source: () => {
        list = [];
        return null;
      },
    });
    await mount(<App />);
    await until(() => row(3));
    await click($("button", row(3)));
    await click($(tid("delete-source")));
    expect($(tid("confirm-dialog")).textContent).toMatch(/forget everything it learnt/);
    await click($(tid("confirm-cancel")));
    expect(shell.called("delete_source")).toHaveLength(0);

    await click($(tid("delete-source")));
    await click($(tid("confirm-ok")));
    expect(shell.called("delete_source")[0]!.args).toEqual({ source: 3 });
    expect($$(tid("source-row"))).toHaveLength(0);
  });

  it("cancels the running job of a source", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      sources: () => [{ ...ready, state: "processing", chunkCount: 0 }],
      jobs: () => [{ id: 44, sourceId: 3, state: "running" }],
      source_detail: () => ({ source: ready, chunks: [] }),
      cancel_job: () => ({ id: 44, state: "cancelled" }),
    });
    await mount(<App />);
    await until(() => row(3));
    await click($("button", row(3)));
    await click($(tid("cancel-job")));
    expect(shell.called("cancel_job")[0]!.args).toEqual({ job: 44 });
  });
});

describe("drag and drop", () => {
  it("shows the overlay while files are dragged over the window and queues them on drop", async () => {
    const shell = fakeShell({ ...baseHandlers(), ingest_paths: () => ({ queued: [], skipped: [] }) });
    await mount(<App />);
    const { emit } = await import("@tauri-apps/api/event");
    await emit("tauri://drag-enter", { paths: ["/x/a.md"], position: { x: 1, y: 1 } });
    await until(() => $(tid("drop-overlay")));
    await emit("tauri://drag-drop", { paths: ["/x/a.md"], position: { x: 1, y: 1 } });
    await until(() => $$(tid("drop-overlay")).length === 0);
    await until(() => shell.called("ingest_paths").length === 1);
    expect(shell.called("ingest_paths")[0]!.args).toEqual({ twin: 1, paths: ["/x/a.md"] });
  });
});

describe("keyboard", () => {
  it("Ctrl+O opens the file picker and queues what was picked", async () => {
    const list: Source[] = [];
    const shell = fakeShell({
      ...baseHandlers(),
      sources: () => list,
      "plugin:dialog|open": () => ["/picked/a.md"],
      ingest_paths: () => {
        list.push({ ...ready, id: 1, title: "a.md", state: "queued" });
        return { queued: [{ origin: "/picked/a.md", sourceId: 1, jobId: 1, status: "queued" }], skipped: [] };
      },
    });
    await mount(<App />);
    await key(window, "o", { ctrlKey: true });
    await until(() => shell.called("ingest_paths").length === 1);
    expect(shell.called("plugin:dialog|open")[0]!.args.options).toMatchObject({ multiple: true });
    expect(shell.called("ingest_paths")[0]!.args.paths).toEqual(["/picked/a.md"]);
    await until(() => $(tid("source-row")).dataset.state === "queued");
  });

  it("Cmd/Ctrl+N opens a new chat with the composer focused", async () => {
    fakeShell(baseHandlers());
    await mount(<App />);
    expect($(tid("view-chat")).hidden).toBe(true);
    await key(window, "n", { metaKey: true });
    expect($(tid("view-chat")).hidden).toBe(false);
    expect($(tid("nav-chat")).getAttribute("aria-current")).toBe("page");
    await until(() => document.activeElement === $(tid("composer")));
  });

  it("navigation tabs switch views", async () => {
    fakeShell(baseHandlers());
    await mount(<App />);
    await click($(tid("nav-settings")));
    expect($(tid("view-settings")).hidden).toBe(false);
    expect($(tid("view-sources")).hidden).toBe(true);
  });
});
