// The workspace list: create, open, rename and delete workspaces (/api/postgres_sessions/).

import { api, type Session } from "./api";
import { askForm, confirmAction, formatTime, h, replace, toast } from "./dom";

export function renderWorkspaces(root: HTMLElement): void {
  const list = h("ul", { class: "workspace-list", "aria-label": "Workspaces" });
  const createButton = h("button", { class: "primary", type: "button" }, "New workspace");
  replace(
    root,
    h(
      "div",
      { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, "Workspaces"), createButton),
      list,
    ),
  );

  const load = async (): Promise<void> => {
    try {
      const { data } = await api.listSessions();
      if (data.length === 0) {
        replace(list, h("li", { class: "empty" }, "No workspace yet: create one to start coding."));
        return;
      }
      replace(list, ...data.map((session) => row(session, load)));
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
  };

  createButton.addEventListener("click", async () => {
    const values = await askForm("New workspace", [{ name: "name", label: "Name", required: true }], "Create");
    if (!values) return;
    try {
      const { data } = await api.createSession(values.name.trim());
      await api.ensureDefaults(data.id); // a new workspace opens with main.py to run
      location.hash = `#/w/${data.id}`;
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
  });

  void load();
}

function row(session: Session, reload: () => Promise<void>): HTMLElement {
  const rename = async (): Promise<void> => {
    const values = await askForm("Rename workspace", [{ name: "name", label: "Name", value: session.name, required: true }], "Rename");
    if (!values) return;
    try {
      await api.renameSession(session.id, values.name.trim());
      await reload();
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
  };
  const remove = async (): Promise<void> => {
    const sure = await confirmAction("Delete workspace", `Delete “${session.name}” and all its files? This cannot be undone.`);
    if (!sure) return;
    try {
      await api.deleteSession(session.id);
      toast(`Deleted ${session.name}`);
      await reload();
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    }
  };
  return h(
    "li",
    { class: "workspace-row", "data-id": session.id },
    h("a", { class: "workspace-name", href: `#/w/${session.id}` }, session.name),
    h("span", { class: "muted" }, `${session.language} · updated ${formatTime(session.updated_at)}`),
    h(
      "span",
      { class: "row-actions" },
      h("button", { type: "button", onclick: rename, "aria-label": `Rename ${session.name}` }, "Rename"),
      h("button", { type: "button", class: "danger", onclick: remove, "aria-label": `Delete ${session.name}` }, "Delete"),
    ),
  );
}
