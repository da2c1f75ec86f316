// The review of one workspace as its reviewer sees it: the files read-only (no save, no
// terminal) and the decision buttons: approve, request changes, reject.

import { api, type Review, type ReviewStatus, type User } from "./api";
import { formatTime, h, replace, toast } from "./dom";
import { Editor } from "./editor";
import { fail, STATUS_LABEL, statusBadge } from "./reviews";
import { FileTree } from "./tree";

/** A reviewer reading a workspace: its files read-only, no terminal, and the decision. */
export function renderReviewDetail(root: HTMLElement, reviewId: number, me: User): () => void {
  const head = h("div", { class: "review-head" }, "Loading…");
  const decision = h("div", { class: "decision" });
  const layout = h("div", { class: "review-layout" });
  replace(root, h("div", { class: "page review-page" }, head, decision, layout));

  void (async () => {
    let review: Review;
    try {
      review = (await api.getReview(reviewId)).data;
    } catch (err) {
      replace(head, h("p", { class: "form-error" }, err instanceof Error ? err.message : String(err)));
      return;
    }
    const editor = new Editor({ workspaceId: review.session_id, readOnly: true });
    const tree = new FileTree({ workspaceId: review.session_id, readOnly: true, onOpen: (path) => void editor.open(path) });
    editor.element.classList.add("read-only");
    const showHead = (r: Review): void =>
      replace(
        head,
        h("h1", {}, r.title, " ", statusBadge(r.status)),
        h("p", { class: "muted" }, `priority ${r.priority} · submitted by user #${r.submitted_by} · ${formatTime(r.created_at)}`),
        r.description && h("p", { class: "review-description" }, r.description),
        h("p", { class: "read-only-note" }, "Read-only: you can read this workspace's files; you cannot change them or open its terminal."),
      );
    showHead(review);
    const canDecide = (r: Review): boolean => r.status === "in_review" && r.assigned_to === me.id;
    const showDecision = (r: Review): void => {
      if (!canDecide(r)) {
        replace(decision, r.reviewed_at ? h("p", {}, `Decided ${formatTime(r.reviewed_at)}: `, statusBadge(r.status)) : null);
        return;
      }
      const comment = h("textarea", { name: "comment", rows: 2, placeholder: "Comment for the author (optional)" });
      const decide = async (status: ReviewStatus): Promise<void> => {
        try {
          const { data } = await api.setReviewStatus(r.id, status, comment.value);
          toast(`Review ${STATUS_LABEL[status]}`);
          showHead(data);
          showDecision(data);
        } catch (err) {
          fail(err);
        }
      };
      replace(
        decision,
        comment,
        h(
          "div",
          { class: "decision-buttons" },
          h("button", { type: "button", class: "primary", onclick: () => void decide("approved") }, "Approve"),
          h("button", { type: "button", onclick: () => void decide("requires_changes") }, "Request changes"),
          h("button", { type: "button", class: "danger", onclick: () => void decide("rejected") }, "Reject"),
        ),
      );
    };
    showDecision(review);
    replace(layout, tree.element, editor.element);
    const entries = await tree.refresh();
    const first = entries.find((e) => e.path === "main.py") ?? entries.find((e) => e.type === "file");
    if (first) {
      tree.select(first.path);
      await editor.open(first.path);
    }
  })();
  return () => undefined;
}
