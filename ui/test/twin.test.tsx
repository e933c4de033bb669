import { afterEach, describe, expect, it } from "vitest";
import { App } from "../src/app";
import { $, $$, baseHandlers, click, fakeShell, mount, resetShell, tid, type, until } from "./helpers";

afterEach(resetShell);

const persona = { name: "Ada", description: "", voice: "", notCovered: "" };

describe("twin", () => {
  it("saves the persona form", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      persona: () => persona,
      verified_answers: () => [],
      set_persona: (a) => a.persona,
    });
    await mount(<App initialView="twin" />);
    await until(() => ($(tid("persona-name")) as HTMLInputElement).value === "Ada");
    expect(($(tid("persona-save")) as HTMLButtonElement).disabled).toBe(true);
    await type($(tid("persona-not-covered")) as HTMLTextAreaElement, "I haven't written about that.");
    await click($(tid("persona-save")));
    expect(shell.called("set_persona")[0]!.args).toEqual({
      twin: 1,
      persona: { ...persona, notCovered: "I haven't written about that." },
    });
  });

  it("deletes a verified answer after confirming", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      persona: () => persona,
      verified_answers: () => [{ id: 4, question: "Who approves?", answer: "Two reviewers.", createdAt: 0 }],
      delete_verified: () => null,
    });
    await mount(<App initialView="twin" />);
    await until(() => $(tid("verified-item")));
    await click($(tid("verified-delete")));
    await click($(tid("confirm-ok")));
    expect(shell.called("delete_verified")[0]!.args).toEqual({ verified: 4 });
    expect($$(tid("verified-item"))).toHaveLength(0);
  });

  it("creates a twin and switches to it", async () => {
    const twins = [{ id: 1, name: "Ada", createdAt: 0 }];
    fakeShell({
      ...baseHandlers(),
      twins: () => twins,
      persona: () => persona,
      verified_answers: () => [],
      create_twin: (a) => {
        const t = { id: 2, name: String(a.name), createdAt: 0 };
        twins.push(t);
        return t;
      },
    });
    await mount(<App initialView="twin" />);
    await click($(tid("create-twin")));
    await type($(tid("twin-name-input")) as HTMLInputElement, "Work");
    await click($(tid("twin-name-save")));
    await until(() => $(tid("twin-name")).textContent === "Work");
    expect(localStorage.getItem("doppel.twin")).toBe("2");
    expect($$(`${tid("twin-switcher")} option`).map((o) => o.textContent)).toEqual(["Ada", "Work"]);
  });
});

describe("theme", () => {
  it("the toggle sets and remembers a theme", async () => {
    fakeShell(baseHandlers());
    await mount(<App />);
    await click($(tid("theme-toggle")));
    const chosen = document.documentElement.getAttribute("data-theme");
    expect(chosen === "dark" || chosen === "light").toBe(true);
    expect(localStorage.getItem("doppel.theme")).toBe(chosen);
  });
});
