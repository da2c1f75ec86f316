// The workspace status panel (GET /api/workspace/{id}/status): the execution environment's
// state, when files were last synced back from it, and what that sync had to skip.

import { api, type WorkspaceStatus } from "./api";
import { formatTime, h, replace } from "./dom";

export class StatusPanel {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;

  constructor(private readonly workspaceId: string) {
    this.body = h("div", { class: "status-body" }, "…");
    this.element = h(
      "section",
      { class: "status-pane", "aria-label": "Workspace status" },
      h("div", { class: "pane-head" }, h("span", { class: "pane-title" }, "Status")),
      this.body,
    );
  }

  async refresh(): Promise<void> {
    try {
      this.show((await api.status(this.workspaceId)).data);
    } catch (err) {
      replace(this.body, h("p", { class: "form-error" }, err instanceof Error ? err.message : String(err)));
    }
  }

  private show(status: WorkspaceStatus): void {
    const exec = status.execution;
    const skipped = status.sync_skipped ?? [];
    const files = `${status.file_count} file${status.file_count === 1 ? "" : "s"}`;
    const dirs = status.directory_count === undefined ? "" : `, ${status.directory_count} folder${status.directory_count === 1 ? "" : "s"}`;
    replace(
      this.body,
      h(
        "dl",
        { class: "status-list" },
        h("dt", {}, "Environment"),
        h("dd", { "data-testid": "environment-state" }, h("span", { class: `dot ${exec.state}` }), `${exec.state} (${exec.backend})`),
        exec.since && h("dt", {}, "Since"),
        exec.since && h("dd", {}, formatTime(exec.since)),
        h("dt", {}, "Files"),
        h("dd", {}, files + dirs),
        h("dt", {}, "Terminals"),
        h("dd", {}, String(status.active_connections)),
        h("dt", {}, "Last sync"),
        h("dd", { "data-testid": "last-sync" }, formatTime(status.last_synced_at)),
      ),
      status.message && h("p", { class: "muted" }, status.message),
      skipped.length > 0 &&
        h(
          "details",
          { class: "skipped", open: true },
          h("summary", {}, `${skipped.length} not synced from the terminal`),
          h("ul", {}, ...skipped.map((s) => h("li", {}, h("code", {}, s.path), ` — ${s.reason}`))),
        ),
    );
  }
}
