// Syntax highlighting by file extension; each language is its own chunk, loaded on first use.

import type { Extension } from "@codemirror/state";

export async function languageFor(path: string): Promise<Extension> {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  switch (ext) {
    case "py":
    case "pyi":
      return (await import("@codemirror/lang-python")).python();
    case "js":
    case "mjs":
    case "cjs":
    case "jsx":
      return (await import("@codemirror/lang-javascript")).javascript({ jsx: ext === "jsx" });
    case "ts":
    case "mts":
    case "cts":
    case "tsx":
      return (await import("@codemirror/lang-javascript")).javascript({ typescript: true, jsx: ext === "tsx" });
    case "json":
      return (await import("@codemirror/lang-json")).json();
    case "md":
    case "markdown":
      return (await import("@codemirror/lang-markdown")).markdown();
    case "html":
    case "htm":
      return (await import("@codemirror/lang-html")).html();
    case "css":
      return (await import("@codemirror/lang-css")).css();
    default:
      return [];
  }
}

/** The language's name as the status bar shows it. */
export function languageName(path: string): string {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  const names: Record<string, string> = {
    py: "Python", pyi: "Python", js: "JavaScript", mjs: "JavaScript", cjs: "JavaScript", jsx: "JSX",
    ts: "TypeScript", mts: "TypeScript", cts: "TypeScript", tsx: "TSX", json: "JSON",
    md: "Markdown", markdown: "Markdown", html: "HTML", htm: "HTML", css: "CSS",
  };
  return names[ext] ?? "Plain text";
}
