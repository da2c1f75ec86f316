// The file tree of one workspace: nested folders from the flat, path-sorted listing, and (when
// editable) create, rename and delete. A rename is "create the new path, then delete the old",
// the only way the API offers; a folder is copied entry by entry and rolled back on failure.

import { api, type FileMeta } from "./api";
import { askForm, confirmAction, formatBytes, h, replace, toast } from "./dom";

export interface TreeOptions {
  workspaceId: string;
  readOnly: boolean;
  onOpen: (path: string) => void;
  /** A path (file or folder) disappeared through this tree: close what shows it. */
  onRemoved?: (path: string) => void;
  onRenamed?: (from: string, to: string) => void;
}

interface Node {
  entry: FileMeta;
  children: Node[];
}

export class FileTree {
  readonly element: HTMLElement;
  entries: FileMeta[] = [];
  private readonly list: HTMLElement;
  private readonly expanded = new Set<string>();
  private readonly binary = new Set<string>();
  private selected: string | null = null;

  constructor(private readonly options: TreeOptions) {
    this.list = h("ul", { class: "tree", role: "tree", "aria-label": "Files" });
    const toolbar = h("div", { class: "tree-toolbar" }, h("span", { class: "pane-title" }, "Files"));
    if (!options.readOnly) {
      toolbar.append(
        h("button", { type: "button", title: "New file", onclick: () => this.create("file") }, "+ File"),
        h("button", { type: "button", title: "New folder", onclick: () => this.create("directory") }, "+ Folder"),
      );
    }
    toolbar.append(h("button", { type: "button", title: "Refresh", "aria-label": "Refresh files", onclick: () => void this.refresh() }, "⟳"));
    this.element = h("div", { class: "tree-pane" }, toolbar, this.list);
  }

  /** Fetch the listing and redraw; returns it for whoever else cares (the editor). */
  async refresh(): Promise<FileMeta[]> {
    try {
      this.entries = (await api.listFiles(this.options.workspaceId)).data;
      this.render();
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
    return this.entries;
  }

  markBinary(path: string): void {
    this.binary.add(path);
    this.render();
  }

  select(path: string | null): void {
    this.selected = path;
    // open every folder above the selection so it can be seen
    for (let i = path?.indexOf("/") ?? -1; path && i > 0; i = path.indexOf("/", i + 1)) this.expanded.add(path.slice(0, i));
    this.render();
  }

  private render(): void {
    replace(this.list, ...buildTree(this.entries).map((node) => this.renderNode(node, 0)));
    if (this.entries.length === 0) this.list.append(h("li", { class: "empty" }, "No files"));
  }

  private renderNode(node: Node, depth: number): HTMLElement {
    const { entry } = node;
    const isDir = entry.type === "directory";
    const open = this.expanded.has(entry.path);
    const label = h(
      "button",
      {
        type: "button",
        class: `tree-label ${isDir ? "dir" : "file"}${this.selected === entry.path ? " selected" : ""}`,
        style: `padding-left: ${0.5 + depth * 0.9}rem`,
        title: isDir ? entry.path : `${entry.path} · ${formatBytes(entry.size)}`,
      },
      h("span", { class: "twisty" }, isDir ? (open ? "▾" : "▸") : ""),
      h("span", { class: "tree-name" }, entry.name),
      this.binary.has(entry.path) && h("span", { class: "badge" }, "binary"),
    );
    label.addEventListener("click", () => {
      if (isDir) {
        if (open) this.expanded.delete(entry.path);
        else this.expanded.add(entry.path);
        this.selected = entry.path;
        this.render();
      } else {
        this.selected = entry.path;
        this.render();
        this.options.onOpen(entry.path);
      }
    });
    const row = h("div", { class: "tree-row" }, label);
    if (!this.options.readOnly) {
      row.append(
        h(
          "span",
          { class: "tree-actions" },
          h("button", { type: "button", title: "Rename", "aria-label": `Rename ${entry.path}`, onclick: () => void this.rename(entry) }, "✎"),
          h("button", { type: "button", title: "Delete", "aria-label": `Delete ${entry.path}`, onclick: () => void this.remove(entry) }, "×"),
        ),
      );
    }
    const item = h(
      "li",
      { role: "treeitem", "data-path": entry.path, "data-type": entry.type, "aria-expanded": isDir ? String(open) : undefined },
      row,
    );
    if (isDir && open) {
      item.append(h("ul", { role: "group" }, ...node.children.map((child) => this.renderNode(child, depth + 1))));
    }
    return item;
  }

  /** The folder a new entry goes into: the selected folder, or the selected file's folder. */
  private baseFolder(): string {
    const selected = this.entries.find((e) => e.path === this.selected);
    if (!selected) return "";
    if (selected.type === "directory") return `${selected.path}/`;
    const slash = selected.path.lastIndexOf("/");
    return slash > 0 ? selected.path.slice(0, slash + 1) : "";
  }

  private async create(type: "file" | "directory"): Promise<void> {
    const values = await askForm(
      type === "file" ? "New file" : "New folder",
      [{ name: "path", label: "Path (folders with /)", value: this.baseFolder(), required: true }],
      "Create",
    );
    const path = values?.path.trim().replace(/^\/+|\/+$/g, "");
    if (!path) return;
    try {
      await api.createEntry(this.options.workspaceId, path, type);
      this.select(path);
      await this.refresh();
      if (type === "file") this.options.onOpen(path);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
  }

  private async rename(entry: FileMeta): Promise<void> {
    const values = await askForm(`Rename ${entry.name}`, [{ name: "path", label: "New path", value: entry.path, required: true }], "Rename");
    const to = values?.path.trim().replace(/^\/+|\/+$/g, "");
    if (!to || to === entry.path) return;
    try {
      await renameEntry(this.options.workspaceId, this.entries, entry, to);
      for (const path of [...this.expanded]) {
        if (path === entry.path || path.startsWith(`${entry.path}/`)) {
          this.expanded.delete(path);
          this.expanded.add(to + path.slice(entry.path.length)); // folders stay open where they were
        }
      }
      this.options.onRenamed?.(entry.path, to);
      this.select(to);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
    await this.refresh();
  }

  private async remove(entry: FileMeta): Promise<void> {
    const what = entry.type === "directory" ? `the folder “${entry.path}” and everything in it` : `“${entry.path}”`;
    if (!(await confirmAction("Delete", `Delete ${what}?`))) return;
    try {
      await api.deleteEntry(this.options.workspaceId, entry.path);
      this.options.onRemoved?.(entry.path);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
    await this.refresh();
  }
}

/** Nest the flat listing (sorted by path, parents listed) into a tree; folders first. */
export function buildTree(entries: FileMeta[]): Node[] {
  const roots: Node[] = [];
  const byPath = new Map<string, Node>();
  for (const entry of entries) {
    const node: Node = { entry, children: [] };
    byPath.set(entry.path, node);
    const slash = entry.path.lastIndexOf("/");
    const parent = slash > 0 ? byPath.get(entry.path.slice(0, slash)) : undefined;
    (parent ? parent.children : roots).push(node);
  }
  const order = (nodes: Node[]): Node[] => {
    nodes.sort((a, b) =>
      a.entry.type === b.entry.type ? a.entry.name.localeCompare(b.entry.name) : a.entry.type === "directory" ? -1 : 1,
    );
    for (const node of nodes) order(node.children);
    return nodes;
  };
  return order(roots);
}

/** Copy `entry` (and, for a folder, everything under it) to `to`, then delete the original. */
export async function renameEntry(workspaceId: string, entries: FileMeta[], entry: FileMeta, to: string): Promise<void> {
  if (entries.some((e) => e.path === to)) throw new Error(`${to} already exists`);
  if (to.startsWith(`${entry.path}/`)) throw new Error("A folder cannot move into itself");
  const moving =
    entry.type === "file" ? [entry] : entries.filter((e) => e.path === entry.path || e.path.startsWith(`${entry.path}/`));
  let copied = 0;
  try {
    for (const item of moving) {
      const target = to + item.path.slice(entry.path.length);
      if (item.type === "directory") {
        await api.createEntry(workspaceId, target, "directory");
      } else {
        const { data } = await api.readFile(workspaceId, item.path);
        await api.createEntry(workspaceId, target, "file", data.content, data.encoding);
      }
      copied += 1;
    }
  } catch (err) {
    // undo the half-made copy (never touch `to` when not even its first entry was ours)
    if (copied > 0) await api.deleteEntry(workspaceId, to).catch(() => undefined);
    throw err;
  }
  await api.deleteEntry(workspaceId, entry.path);
}
