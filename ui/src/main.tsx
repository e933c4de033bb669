import { render } from "preact";
import { App } from "./app";
import "./styles.css";

async function start() {
  // Outside the desktop shell (a browser during development, or a mock build for screenshots) a
  // canned backend stands in. Production builds leave this branch, and the mock, out entirely.
  if ((import.meta.env.DEV || import.meta.env.VITE_MOCK === "1") && !("__TAURI_INTERNALS__" in window)) {
    const { installMock } = await import("./mock");
    installMock();
  }
  const root = document.getElementById("app");
  if (root) render(<App />, root);
}

void start();
