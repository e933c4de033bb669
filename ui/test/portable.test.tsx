// Settings' local API: tokens shown once with their share link, their last use, and the
// warning before an address other computers can reach.

import { afterEach, describe, expect, it } from "vitest";
import { App } from "../src/app";
import { $, $$, baseHandlers, click, fakeShell, mount, resetShell, tid, type, until } from "./helpers";

afterEach(resetShell);

const token = (id: number, name: string, scope: string, lastUsedAt: number | null) => ({
  id,
  twin: 1,
  name,
  scope,
  prefix: "aaaaaaaaaaaa",
  ratePerMinute: 60,
  dailyTokens: 50000,
  createdAt: 0,
  lastUsedAt,
  revokedAt: null,
});

describe("the local API in Settings", () => {
  it("shows a new token once with its share link, and lists tokens with their last use", async () => {
    const secret = "dpl_bbbbbbbbbbbb_" + "c".repeat(64);
    const tokens = [token(1, "scripts", "read", Date.now() - 5 * 60_000)];
    const shell = fakeShell({
      ...baseHandlers(),
      api_tokens: () => tokens,
      create_api_token: (a) => {
        const made = token(2, String(a.name), String(a.scope), null);
        tokens.unshift(made);
        return { token: made, secret, shareLink: `http://127.0.0.1:8765/share#token=${secret}` };
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("api-token")));
    expect($(tid("api-token-used")).textContent).toMatch(/last used/);
    await type($(tid("api-token-name")) as HTMLInputElement, "phone");
    await click($(tid("api-token-create")));
    await until(() => $(tid("api-share-link")));
    expect(shell.called("create_api_token")[0]!.args).toEqual({ twin: 1, name: "phone", scope: "ask" });
    expect($(tid("api-token-secret")).textContent).toBe(secret);
    expect($(tid("api-share-link")).textContent).toBe(`http://127.0.0.1:8765/share#token=${secret}`);
    expect($$(tid("api-token")).length).toBe(2);
  });

  it("asks before listening on an address other computers can reach", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      set_api: (a) => {
        if (a.address === "0.0.0.0:8765" && !a.confirmed) {
          throw { code: "confirmation_needed", message: "listening on 0.0.0.0:8765 lets other computers on the network reach the API" };
        }
        return { enabled: a.enabled, address: a.address, url: `http://${String(a.address)}/v1` };
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("api-address")));
    await type($(tid("api-address")) as HTMLInputElement, "0.0.0.0:8765");
    await click($(tid("api-enabled")));
    await until(() => $(tid("api-address-warning")));
    expect(shell.called("set_api").map((c) => c.args.confirmed)).toEqual([false]);
  });
});
