/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The shell loads `dist/` from disk (`frontendDist: ../ui/dist`) and uses the dev server on 1420.
export default defineConfig({
  base: "./",
  clearScreen: false,
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  server: { port: 1420, strictPort: true },
  build: { outDir: "dist", emptyOutDir: true, target: "es2021" },
  test: {
    environment: "happy-dom",
    include: ["test/**/*.test.{ts,tsx}"],
  },
});
