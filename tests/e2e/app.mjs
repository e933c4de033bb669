// Drives Doppel's desktop window: starts it through tauri-driver, calls its IPC commands as
// the front end does (window.__TAURI_INTERNALS__.invoke), listens to its events, and polls
// with a bound instead of sleeping.

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Keys, Session, WebDriverError } from "./webdriver.mjs";

export { Keys };

export const env = {
  driver: process.env.E2E_DRIVER_URL ?? "http://127.0.0.1:4444",
  application: process.env.E2E_APP,
  dataDir: process.env.DOPPEL_DATA_DIR,
  /** Where the stand-in for xdg-open (scripts/e2e) writes what the app asked it to open. */
  opened: process.env.E2E_OPENED,
  screenshots: process.env.E2E_SCREENSHOTS ?? new URL("./screenshots/", import.meta.url).pathname,
};

/** Calls `probe` until it returns something truthy, at most `timeoutMs`; returns that. */
export async function poll(what, probe, { timeoutMs = 60_000, everyMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting for ${what} after ${timeoutMs} ms${last ? `: ${last.message}` : ""}`);
    }
    await delay(everyMs);
  }
}

/**
 * A CSS selector for the element with this `data-testid`, and with these attribute values:
 * `byTestId("source-row", { "data-state": "ready" })`.
 */
export function byTestId(id, attributes = {}) {
  const more = Object.entries(attributes)
    .map(([name, value]) => `[${name}=${JSON.stringify(String(value))}]`)
    .join("");
  return `[data-testid=${JSON.stringify(id)}]${more}`;
}

/**
 * Waits until no process holds the data directory's lock (Doppel takes it with flock(2), as
 * util-linux's `flock` does): the driver ends a session before the app's process has exited.
 */
export async function dataDirReleased() {
  const lock = join(env.dataDir, "doppel.lock");
  await poll("the data directory's lock to be released", () =>
    !existsSync(lock) || spawnSync("flock", ["--nonblock", lock, "true"]).status === 0,
  );
}

/** The running processes, each with its parent's pid and its command line. */
function processes() {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
        return { pid: Number(pid), ppid, cmd };
      } catch {
        return null;
      }
    })
    .filter(Boolean);
}

/** The pids of the WebKitWebProcess (the page's process) of each running doppel-desktop. */
export function webProcesses() {
  const all = processes();
  const apps = new Set(all.filter((p) => p.cmd.startsWith(env.application)).map((p) => p.pid));
  return all.filter((p) => apps.has(p.ppid) && /WebKitWebProcess/.test(p.cmd)).map((p) => p.pid);
}

/** An IPC rejection, with the command's `{code, message}`. */
export class CommandError extends Error {
  constructor(command, error) {
    super(`${command} failed: ${JSON.stringify(error)}`);
    this.code = error?.code;
    this.payload = error;
  }
}

export class App {
  /** Starts the app and waits until its page answers (WebKitWebDriver may be slow to attach). */
  static async start() {
    if (!env.application) throw new Error("E2E_APP must name the doppel-desktop binary");
    const session = await poll("a WebDriver session", () => Session.start(env.driver, env.application), {
      timeoutMs: 60_000,
      everyMs: 500,
    });
    const app = new App(session);
    await poll("the window's document", () => session.findElement("body"), { timeoutMs: 60_000 });
    await poll("Tauri's IPC in the page", () =>
      session.execute("return typeof window.__TAURI_INTERNALS__?.invoke === 'function'"),
    );
    return app;
  }

  constructor(session) {
    this.session = session;
  }

  /** Invokes a command as the front end does; resolves with its value or throws CommandError. */
  async invoke(command, args = {}) {
    const outcome = await this.session.executeAsync(
      `const [command, args, done] = arguments;
       window.__TAURI_INTERNALS__.invoke(command, args).then(
         (value) => done({ ok: true, value: value ?? null }),
         (error) => done({ ok: false, error }));`,
      [command, args],
    );
    if (!outcome.ok) throw new CommandError(command, outcome.error);
    return outcome.value;
  }

  /** Starts collecting a Tauri event's payloads in the page (see `received`). */
  async listen(event) {
    await this.session.executeAsync(
      `const [event, done] = arguments;
       const bag = (window.__e2eEvents ??= {});
       bag[event] = [];
       const internals = window.__TAURI_INTERNALS__;
       // doppel://event carries an array of events at a time; they are collected one by one.
       const handler = internals.transformCallback((e) =>
         Array.isArray(e.payload) ? bag[event].push(...e.payload) : bag[event].push(e.payload));
       internals.invoke("plugin:event|listen", { event, target: { kind: "Any" }, handler })
         .then(() => done(null), (e) => done(String(e)));`,
      [event],
    );
  }

  /** The payloads of `event` received since `listen`. */
  received(event) {
    return this.session.execute("return (window.__e2eEvents ?? {})[arguments[0]] ?? []", [event]);
  }

  /**
   * Asks the twin through a real IPC channel (as `new Channel()` of @tauri-apps/api does) and
   * keeps the answer's promise and streamed pieces in the page (see `askState`).
   */
  async startAsk(request) {
    await this.session.execute(
      `const [request] = arguments;
       const internals = window.__TAURI_INTERNALS__;
       const state = (window.__e2eAsk = { pieces: [], result: null, error: null });
       const id = internals.transformCallback((message) => state.pieces.push(message));
       internals.invoke("ask", { request, onEvent: "__CHANNEL__:" + id }).then(
         (answer) => { state.result = answer; },
         (error) => { state.error = error; });
       return null;`,
      [request],
    );
  }

  askState() {
    return this.session.execute("return window.__e2eAsk");
  }

  /**
   * What a person sees of every element matching `selector` (in document order): its text, its
   * attributes and whether it is shown. `within` narrows the search to the elements inside
   * the first match of another selector.
   */
  elements(selector, within = null) {
    return this.session.execute(
      `const [selector, within] = arguments;
       const root = within ? document.querySelector(within) : document;
       if (!root) return [];
       return [...root.querySelectorAll(selector)].map((e) => ({
         text: (e.innerText ?? e.textContent ?? "").trim(),
         value: "value" in e ? e.value : null,
         attributes: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value])),
         shown: e.getClientRects().length > 0 && !e.closest("[hidden]"),
       }));`,
      [selector, within],
    );
  }

  /**
   * Polls the elements matching `selector` until `check(elements)` returns something truthy;
   * returns that. By default, waits for at least one shown element.
   */
  waitFor(what, selector, check = (found) => found.some((e) => e.shown) && found, options = {}) {
    return poll(what, async () => check(await this.elements(selector)), options);
  }

  /** The first shown element matching `selector`, waited for (the first query may need retries). */
  async element(selector, options = {}) {
    await this.waitFor(`${selector} to be shown`, selector, undefined, options);
    return poll(`${selector} to be found`, async () => {
      for (const element of await this.session.findElements(selector)) {
        const shown = await this.session.execute(
          "return arguments[0].getClientRects().length > 0 && !arguments[0].closest('[hidden]')",
          [element],
        );
        if (shown) return element;
      }
      return null;
    });
  }

  /** Clicks the first shown element matching `selector`, as a person would. */
  async click(selector) {
    await poll(`a click on ${selector}`, async () => {
      await this.session.click(await this.element(selector));
      return true;
    });
  }

  /** Types `text` into the first shown element matching `selector` (after emptying it if `clear`). */
  async type(selector, text, { clear = false } = {}) {
    const element = await this.element(selector);
    if (clear) await this.session.clear(element);
    await this.session.sendKeys(element, text);
  }

  /** Saves a PNG of the window as `name`.png in the screenshot folder; returns its path. */
  async screenshot(name) {
    // What the page last changed is painted first (a screenshot shows the last painted frame).
    await this.session.executeAsync("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(null)));");
    mkdirSync(env.screenshots, { recursive: true });
    const path = join(env.screenshots, `${name}.png`);
    // The display's own pixels inside the window, from the X server: WebKitWebDriver's
    // screenshot never returns while the page is drawn without compositing (WebKitGTK 2.50), as
    // it is on a machine with no GPU (src-tauri/src/rendering.rs).
    const { x, y, width, height } = await this.session.windowRect();
    execFileSync("import", ["-display", process.env.DISPLAY, "-window", "root", "-crop", `${width}x${height}+${x}+${y}`, "+repage", path]);
    return path;
  }

  /** Ends the session, and waits until the app has let go of the data directory. */
  async quit() {
    try {
      await this.session.quit();
    } catch (e) {
      if (!(e instanceof WebDriverError)) throw e;
    }
    await dataDirReleased();
  }
}
