// The IDE is served by the platform's ingress under /ide/, next to the API it calls.
import { defineConfig } from "vite";

// `npm run dev` talks to a platform started with `make run`; same origin through the proxy.
const platform = process.env.PLATFORM_URL ?? "http://127.0.0.1:8002";

export default defineConfig({
  base: "/ide/",
  build: {
    outDir: "dist",
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
  server: {
    // 3000 is one of the platform's default CORS origins, so its Origin checks accept the page
    port: 3000,
    strictPort: true,
    proxy: {
      "/api": { target: platform, ws: true },
      "/workspace": { target: platform },
    },
  },
});
