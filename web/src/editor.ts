// The code editor: CodeMirror 6 on one file at a time. Saving sends the ETag the file was read
// with as If-Match, so a change made behind the editor's back (another tab, a program in the
// terminal, the API) is never overwritten silently: the platform answers 412 and the user
// chooses to reload theirs, overwrite with mine, or keep editing.

import { basicSetup } from "codemirror";
import { EditorState, type Extension } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { indentWithTab } from "@codemirror/commands";
import { api, ApiError, type FileMeta } from "./api";
import { choose, formatBytes, h, replace, toast } from "./dom";
import { languageFor, languageName } from "./lang";

export interface EditorOptions {
  workspaceId: string;
  readOnly: boolean;
  onBinary?: (path: string) => void;
}

type ConflictChoice = "theirs" | "mine" | "keep";

export class Editor {
  readonly element: HTMLElement;
  path: string | null = null;
  private etag: string | null = null;
  private version: number | null = null;
  private savedText = "";
  private saving = false;
  private readonly view: EditorView;
  private readonly title: HTMLElement;
  private readonly state: HTMLElement;
  private readonly saveButton: HTMLButtonElement;
  private readonly body: HTMLElement;
  private readonly placeholder: HTMLElement;

  constructor(private readonly options: EditorOptions) {
    this.title = h("span", { class: "editor-path" }, "No file open");
    this.state = h("span", { class: "editor-state", "data-testid": "editor-state" });
    this.saveButton = h("button", { type: "button", class: "primary", disabled: true, onclick: () => void this.save() }, "Save");
    this.placeholder = h("div", { class: "editor-placeholder" }, "Open a file from the tree.");
    this.view = new EditorView({ state: EditorState.create({ doc: "" }) });
    this.body = h("div", { class: "editor-body" }, this.placeholder);
    const head = h("div", { class: "editor-head" }, this.title, this.state);
    if (!options.readOnly) head.append(this.saveButton);
    this.element = h("div", { class: "editor-pane" }, head, this.body);
  }

  get dirty(): boolean {
    return this.path !== null && this.view.state.doc.toString() !== this.savedText;
  }

  get text(): string {
    return this.view.state.doc.toString();
  }

  /** Open `path`, asking first what to do with unsaved changes of the current file. */
  async open(path: string): Promise<void> {
    if (path === this.path && !this.dirty) return;
    if (!(await this.confirmDiscard())) return;
    try {
      // the language's chunk loads while the file is fetched
      const [{ data, etag }, language] = await Promise.all([
        api.readFile(this.options.workspaceId, path),
        languageFor(path),
      ]);
      if (data.encoding === "base64") {
        this.showBinary(path, data.size);
        return;
      }
      this.load(path, data.content, etag, data.version, language);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
  }

  /** Close the file (it was deleted) or follow it (it was renamed). */
  forget(path: string, renamedTo?: string): void {
    if (this.path === null || (this.path !== path && !this.path.startsWith(`${path}/`))) return;
    if (renamedTo) {
      void this.follow(renamedTo + this.path.slice(path.length));
      return;
    }
    this.path = null;
    this.savedText = "";
    replace(this.body, this.placeholder);
    this.title.textContent = "No file open";
    this.updateState();
  }

  /** The tree was refreshed: a clean file that changed on the platform is reloaded. */
  async external(entries: FileMeta[]): Promise<void> {
    if (this.path === null || this.saving) return;
    const meta = entries.find((e) => e.path === this.path);
    if (!meta) {
      this.setState("deleted on the platform", "warn");
      return;
    }
    if (meta.version === this.version) return;
    if (!this.dirty) await this.reopen(this.path);
    else this.setState("changed on the platform: saving will ask", "warn");
  }

  /** Ask about unsaved changes; true when it is fine to move on. */
  async confirmDiscard(): Promise<boolean> {
    if (!this.dirty) return true;
    const choice = await choose(
      "Unsaved changes",
      `${this.path} has unsaved changes.`,
      [
        { label: "Cancel", value: "cancel" },
        { label: "Discard", value: "discard", danger: true },
        { label: "Save", value: "save", primary: true },
      ],
      "cancel",
    );
    if (choice === "save") return this.save();
    return choice === "discard";
  }

  /** Save with If-Match; on 412 ask what to do. True once the file is saved. */
  async save(force = false): Promise<boolean> {
    if (this.options.readOnly || this.path === null || this.saving) return false;
    if (!this.dirty && !force) return true;
    const path = this.path;
    const text = this.text;
    this.saving = true;
    this.setState("saving…");
    try {
      const { data, etag } = await api.writeFile(this.options.workspaceId, path, text, this.etag);
      this.etag = etag ?? `"${data.version}"`;
      this.version = data.version;
      this.savedText = text;
      this.updateState("saved");
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 412) {
        this.saving = false;
        return this.resolveConflict(path);
      }
      this.setState("not saved", "error");
      toast(err instanceof Error ? err.message : String(err), "error");
      return false;
    } finally {
      this.saving = false;
    }
  }

  private async resolveConflict(path: string): Promise<boolean> {
    this.setState("conflict", "error");
    const choice = await choose<ConflictChoice>(
      "This file changed on the platform",
      h(
        "div",
        {},
        h("p", {}, `${path} was changed since you opened it: saved from another tab, written by a program in the terminal, or through the API.`),
        h("p", {}, "Reload theirs to see that version (your edits are dropped), overwrite it with yours, or keep editing and decide later."),
      ),
      [
        { label: "Keep editing", value: "keep" },
        { label: "Reload theirs", value: "theirs", danger: true },
        { label: "Overwrite mine", value: "mine", primary: true },
      ],
      "keep",
    );
    if (choice === "keep") {
      this.setState("not saved: the file changed on the platform", "warn");
      return false;
    }
    if (choice === "theirs") {
      await this.reopen(path);
      return false;
    }
    // Overwrite what is there NOW: a third change in between asks again.
    try {
      const { etag, data } = await api.readFile(this.options.workspaceId, path);
      this.etag = etag ?? `"${data.version}"`;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      this.etag = null; // deleted meanwhile: saving re-creates it
    }
    return this.save(true);
  }

  /** The open file moved: keep the buffer (unsaved edits too), take the new file's version. */
  private async follow(path: string): Promise<void> {
    try {
      const { data, etag } = await api.readFile(this.options.workspaceId, path);
      this.path = path;
      this.etag = etag ?? `"${data.version}"`;
      this.version = data.version;
      this.updateState();
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
  }

  private async reopen(path: string): Promise<void> {
    this.savedText = this.text; // a reload replaces the text; no "unsaved" question
    this.path = null;
    await this.open(path);
  }

  private load(path: string, content: string, etag: string | null, version: number, language: Extension): void {
    this.path = path;
    this.etag = etag ?? `"${version}"`;
    this.version = version;
    this.savedText = content;
    this.view.setState(EditorState.create({ doc: content, extensions: this.extensions(language) }));
    replace(this.body, this.view.dom);
    this.title.textContent = path;
    this.updateState();
    if (!this.options.readOnly) this.view.focus();
  }

  private showBinary(path: string, size: number): void {
    this.path = null;
    this.savedText = "";
    this.title.textContent = path;
    replace(
      this.body,
      h("div", { class: "editor-placeholder binary", "data-testid": "binary-file" }, `${path} is a binary file (${formatBytes(size)}); it is not opened as text.`),
    );
    this.setState("binary");
    this.saveButton.disabled = true;
    this.options.onBinary?.(path);
  }

  private extensions(language: Extension): Extension[] {
    const base: Extension[] = [basicSetup, language, EditorView.lineWrapping];
    if (this.options.readOnly) {
      return [...base, EditorState.readOnly.of(true), EditorView.editable.of(false)];
    }
    return [
      ...base,
      keymap.of([{ key: "Mod-s", preventDefault: true, run: () => (void this.save(), true) }, indentWithTab]),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) this.updateState();
      }),
    ];
  }

  private updateState(message?: string): void {
    const dirty = this.dirty;
    this.saveButton.disabled = !dirty || this.path === null;
    this.element.classList.toggle("dirty", dirty);
    if (message !== undefined) this.setState(message);
    else if (dirty) this.setState("unsaved");
    else if (this.path) this.setState(this.options.readOnly ? "read-only" : "saved");
    if (this.path) this.title.textContent = `${this.path}${dirty ? " ●" : ""}  ·  ${languageName(this.path)}`;
  }

  private setState(message: string, kind: "" | "warn" | "error" = ""): void {
    this.state.textContent = message;
    this.state.className = `editor-state ${kind}`;
  }
}
