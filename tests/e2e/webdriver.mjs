// A tiny W3C WebDriver client over fetch, enough to drive the desktop window through
// tauri-driver: sessions, scripts, elements, the window's size. No dependencies.

/** A WebDriver error answer, with the driver's error code. */
export class WebDriverError extends Error {
  constructor(status, error, message) {
    super(`${error}: ${message} (HTTP ${status})`);
    this.error = error;
  }
}

async function request(url, method, body) {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new WebDriverError(response.status, "bad answer", text.slice(0, 500));
  }
  // Errors come with a 4xx or 5xx status; a script's own result may well have an `error` field.
  if (!response.ok) {
    throw new WebDriverError(response.status, json.value?.error, json.value?.message);
  }
  return json.value;
}

/** The W3C key for an element reference in WebDriver answers. */
export const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

/** WebDriver key codes for `sendKeys`. */
export const Keys = { ENTER: "\uE007", ESCAPE: "\uE00C" };

function elementId(element) {
  return typeof element === "string" ? element : element[ELEMENT];
}

export class Session {
  /** Starts the app at `application` through the driver at `driverUrl`. */
  static async start(driverUrl, application) {
    const value = await request(`${driverUrl}/session`, "POST", {
      capabilities: { alwaysMatch: { "tauri:options": { application } } },
    });
    const session = new Session(driverUrl, value.sessionId);
    await session.command("POST", "/timeouts", { script: 120_000 });
    return session;
  }

  constructor(driverUrl, id) {
    this.base = `${driverUrl}/session/${id}`;
  }

  command(method, path, body) {
    return request(this.base + path, method, body);
  }

  /** Runs `script` (a function body) in the page and returns what it returns. */
  execute(script, args = []) {
    return this.command("POST", "/execute/sync", { script, args });
  }

  /** Runs `script` in the page; it ends by calling its last argument with the result. */
  executeAsync(script, args = []) {
    return this.command("POST", "/execute/async", { script, args });
  }

  /** The first element matching a CSS selector (throws `no such element`). */
  findElement(selector) {
    return this.command("POST", "/element", { using: "css selector", value: selector });
  }

  /** Every element matching a CSS selector, as WebDriver element references. */
  findElements(selector) {
    return this.command("POST", "/elements", { using: "css selector", value: selector });
  }

  /** Clicks an element as a person would (the driver scrolls it into view first). */
  click(element) {
    return this.command("POST", `/element/${elementId(element)}/click`, {});
  }

  /** Types `text` into an element as key presses (WebDriver key codes such as ENTER work). */
  sendKeys(element, text) {
    return this.command("POST", `/element/${elementId(element)}/value`, { text });
  }

  /** Empties an input or text area. */
  clear(element) {
    return this.command("POST", `/element/${elementId(element)}/clear`, {});
  }

  /** The element's rendered text. */
  text(element) {
    return this.command("GET", `/element/${elementId(element)}/text`);
  }

  title() {
    return this.command("GET", "/title");
  }

  /** Resizes the window (its outer size, in CSS pixels). */
  setWindowRect(width, height) {
    return this.command("POST", "/window/rect", { width, height });
  }

  /** The window's position and outer size. */
  windowRect() {
    return this.command("GET", "/window/rect");
  }

  /** Ends the session; the driver closes the app. */
  async quit() {
    await this.command("DELETE", "");
  }
}
