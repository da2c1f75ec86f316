// One workspace as its owner works in it: file tree and status on the left, the editor above
// the terminal, the review state in the header.
//
// The tree (with the status panel, and the open file if it is unchanged locally) is refreshed
// when the terminal's output goes quiet for 1.5 s (the platform syncs files a program wrote back
// about a second after the shell goes quiet), when the window regains focus, and every 15 s
// while the page is visible, so files created in the terminal show up without a click.

import { api } from "./api";
import { h, replace } from "./dom";
import { Editor } from "./editor";
import { ReviewBadge } from "./reviews";
import { StatusPanel } from "./status";
import type { TerminalPane } from "./terminal";
import { FileTree } from "./tree";

const REFRESH_MS = 15_000;

export interface MountedView {
  dispose(): void;
  canLeave?(): Promise<boolean>;
}

export function renderWorkspace(root: HTMLElement, workspaceId: string, onUnauthenticated: () => void): MountedView {
  const editor = new Editor({ workspaceId, readOnly: false, onBinary: (path) => tree.markBinary(path) });
  const tree: FileTree = new FileTree({
    workspaceId,
    readOnly: false,
    onOpen: (path) => void editor.open(path),
    onRemoved: (path) => editor.forget(path),
    onRenamed: (from, to) => editor.forget(from, to),
  });
  const status = new StatusPanel(workspaceId);
  const badge = new ReviewBadge(workspaceId);
  // xterm.js is its own chunk, loaded after the editor is usable
  const terminalSlot = h("div", { class: "terminal-slot" });
  let terminal: TerminalPane | null = null;
  let disposed = false;
  const title = h("h1", { class: "workspace-title" }, "…");

  replace(
    root,
    h(
      "div",
      { class: "workspace-page" },
      h("div", { class: "workspace-head" }, h("a", { href: "#/workspaces", class: "muted" }, "Workspaces /"), title, badge.element),
      h(
        "div",
        { class: "workspace-grid" },
        h("aside", { class: "sidebar" }, tree.element, status.element),
        h("main", { class: "work-area" }, editor.element, terminalSlot),
      ),
    ),
  );

  let refreshing: Promise<void> | null = null;
  const refresh = (): Promise<void> => {
    refreshing ??= (async () => {
      try {
        const entries = await tree.refresh();
        await Promise.all([editor.external(entries), status.refresh()]);
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  };

  const onKey = (event: KeyboardEvent): void => {
    // Ctrl/Cmd-S saves from anywhere but the terminal, where the keys belong to the shell
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      if ((event.target as HTMLElement | null)?.closest(".terminal-pane")) return;
      event.preventDefault();
      void editor.save();
    }
  };
  const onFocus = (): void => void refresh();
  const onBeforeUnload = (event: BeforeUnloadEvent): void => {
    if (editor.dirty) event.preventDefault();
  };
  window.addEventListener("keydown", onKey);
  window.addEventListener("focus", onFocus);
  window.addEventListener("beforeunload", onBeforeUnload);
  const timer = window.setInterval(() => {
    if (document.visibilityState === "visible") void refresh();
  }, REFRESH_MS);

  void (async () => {
    const listing = tree.refresh(); // in parallel: a workspace opens in one round trip or two
    void badge.refresh();
    try {
      const { data } = await api.getSession(workspaceId);
      title.textContent = data.name;
      document.title = `${data.name} · CEP IDE`;
    } catch (err) {
      replace(root, h("div", { class: "page" }, h("p", { class: "form-error" }, err instanceof Error ? err.message : String(err))));
      return;
    }
    const entries = await listing;
    const first = entries.find((e) => e.path === "main.py") ?? entries.find((e) => e.type === "file");
    if (first) {
      tree.select(first.path);
      await editor.open(first.path);
    }
    performance.mark("ide:editor-ready"); // bench/browser.py: workspace opened to editable
    // The terminal starts the environment, and reads of a starting one wait for it: files first.
    const { TerminalPane } = await import("./terminal");
    if (disposed) return;
    terminal = new TerminalPane({
      workspaceId,
      onQuiet: () => void refresh(),
      onStateChange: () => void status.refresh(),
      onUnauthenticated,
    });
    terminalSlot.replaceWith(terminal.element);
    terminal.start();
    void status.refresh();
  })();

  return {
    canLeave: () => editor.confirmDiscard(),
    dispose() {
      window.removeEventListener("keydown", onKey);
      window.removeEventListener("focus", onFocus);
      window.removeEventListener("beforeunload", onBeforeUnload);
      window.clearInterval(timer);
      disposed = true;
      terminal?.dispose();
    },
  };
}
