// A tiny W3C WebDriver client over fetch, enough to drive the desktop window through
// tauri-driver: sessions, scripts, elements, screenshots. No dependencies.

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

  /** The window as PNG bytes. */
  async screenshot() {
    return Buffer.from(await this.command("GET", "/screenshot"), "base64");
  }

  title() {
    return this.command("GET", "/title");
  }

  /** Ends the session; the driver closes the app. */
  async quit() {
    await this.command("DELETE", "");
  }
}
