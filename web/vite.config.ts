// The IDE is served by the platform's ingress under /ide/, next to the API it calls.
import { defineConfig } from "vite";

// `npm run dev` talks to a platform started with `make run`; same origin through the proxy.
const platform = process.env.PLATFORM_URL ?? "http://127.0.0.1:8002";

const GROUPS = new Set(["xterm", "codemirror"]);
const PACKAGE = /node_modules\/(?:@[^/]+\/)?([^/]+)\//;

/** The package a chunk comes from: its entry module's, else the one most of its modules are in. */
function packageOf(facade: string | null, modules: string[]): string | undefined {
  const own = facade?.match(PACKAGE)?.[1];
  if (own || (facade && !facade.includes("node_modules"))) return own;
  const counts = new Map<string, number>();
  for (const id of modules) {
    const name = id.match(PACKAGE)?.[1];
    if (name) counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
}

export default defineConfig({
  base: "/ide/",
  build: {
    outDir: "dist",
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 800,
    rolldownOptions: {
      output: {
        // the two big libraries get one stable, cacheable chunk each; languages stay lazy
        codeSplitting: {
          groups: [
            { name: "xterm", test: /node_modules\/@xterm\// },
            {
              name: "codemirror",
              test: /node_modules\/(codemirror|@codemirror\/(state|view|commands|language|autocomplete|search|lint)|@lezer\/(common|highlight|lr)|style-mod|w3c-keyname|crelt|@marijn)\//,
            },
          ],
        },
        // name a library chunk after its main package ("lang-python-<hash>.js", not "dist-…")
        chunkFileNames: (chunk) =>
          `assets/${GROUPS.has(chunk.name) ? "[name]" : (packageOf(chunk.facadeModuleId, chunk.moduleIds) ?? "[name]")}-[hash].js`,
      },
    },
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
