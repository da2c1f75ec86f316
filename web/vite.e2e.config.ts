// A test page for the end-to-end tests (not part of the IDE): the stock xterm.js
// AttachAddon on the terminal WebSocket in plain mode. Built into dist-e2e/, served at /e2e/.
import { defineConfig } from "vite";

export default defineConfig({
  root: "e2e",
  base: "/e2e/",
  build: { outDir: "../dist-e2e", emptyOutDir: true, target: "es2022" },
});
