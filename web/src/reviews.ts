// Reviews: the owner's "submit for review" and the decision they get back, and the reviewer's
// queue (claim a pending review). The read-only review itself is review-view.ts.

import { api, type Review, type ReviewStatus, type User } from "./api";
import { askForm, formatTime, h, replace, toast } from "./dom";

export const STATUS_LABEL: Record<ReviewStatus, string> = {
  pending: "pending",
  in_review: "in review",
  approved: "approved",
  rejected: "rejected",
  requires_changes: "changes requested",
};

export function statusBadge(status: ReviewStatus): HTMLElement {
  return h("span", { class: `review-status ${status}`, "data-status": status }, STATUS_LABEL[status]);
}

export function fail(err: unknown): void {
  toast(err instanceof Error ? err.message : String(err), "error");
}

/** The owner's view of a workspace's review: its state, the last comment, and the actions. */
export class ReviewBadge {
  readonly element = h("div", { class: "review-badge", "data-testid": "review-badge" });

  constructor(private readonly sessionId: string) {}

  async refresh(): Promise<void> {
    try {
      const { data } = await api.sessionReviewStatus(this.sessionId);
      const review = data.reviewRequest;
      const parts: (HTMLElement | string)[] = [];
      if (review) {
        parts.push(h("span", { class: "muted" }, "Review:"), statusBadge(review.status));
        if (review.reviewed_at && review.status !== "pending" && review.status !== "in_review") {
          const comment = await lastComment(review.id);
          if (comment) parts.push(h("span", { class: "review-comment", title: comment }, `“${comment}”`));
        }
        if (review.status === "requires_changes") {
          parts.push(h("button", { type: "button", onclick: () => void this.resubmit(review) }, "Resubmit"));
        }
      }
      if (data.canSubmitForReview) {
        parts.push(h("button", { type: "button", class: "primary", onclick: () => void this.submit() }, "Submit for review"));
      }
      replace(this.element, ...parts);
    } catch (err) {
      fail(err);
    }
  }

  private async submit(): Promise<void> {
    const values = await askForm(
      "Submit for review",
      [
        { name: "title", label: "Title", required: true },
        { name: "description", label: "What should the reviewer look at?", type: "textarea" },
        { name: "priority", label: "Priority", type: "select", options: ["low", "medium", "high", "urgent"], value: "medium" },
      ],
      "Submit",
    );
    if (!values) return;
    try {
      await api.submitReview(this.sessionId, values.title.trim(), values.description, values.priority as Review["priority"]);
      toast("Submitted for review");
    } catch (err) {
      fail(err);
    }
    await this.refresh();
  }

  private async resubmit(review: Review): Promise<void> {
    try {
      await api.setReviewStatus(review.id, "pending", "Resubmitted after changes");
      toast("Resubmitted for review");
    } catch (err) {
      fail(err);
    }
    await this.refresh();
  }
}

async function lastComment(reviewId: number): Promise<string> {
  try {
    const entries = (await api.reviewHistory(reviewId)).data;
    const decisions = entries.filter((e) => e.action === "status" && e.comment);
    return decisions.length ? decisions[decisions.length - 1].comment : "";
  } catch {
    return ""; // the comment is a nicety; the status is what matters
  }
}

/** The review queue: waiting reviews (reviewers), mine to review, and the ones I submitted. */
export function renderReviewQueue(root: HTMLElement, me: User): void {
  const sections = h("div", { class: "review-sections" }, "Loading…");
  replace(root, h("div", { class: "page" }, h("div", { class: "page-head" }, h("h1", {}, "Reviews")), sections));

  const load = async (): Promise<void> => {
    let reviews: Review[];
    try {
      reviews = (await api.listReviews()).data;
    } catch (err) {
      fail(err);
      return;
    }
    const waiting = reviews.filter((r) => r.assigned_to === null && r.status === "pending" && r.submitted_by !== me.id);
    const assigned = reviews.filter((r) => r.assigned_to === me.id);
    const submitted = reviews.filter((r) => r.submitted_by === me.id);
    replace(
      sections,
      me.is_reviewer
        ? section("Waiting for a reviewer", "waiting", waiting, (r) => [
            h("button", { type: "button", class: "primary", onclick: () => void claim(r) }, "Claim"),
          ])
        : h("p", { class: "muted" }, "You are not a reviewer. Turn reviewing on in ", h("a", { href: "#/settings" }, "Settings"), " to see other people's requests."),
      (me.is_reviewer || assigned.length > 0) &&
        section("Assigned to me", "assigned", assigned, (r) =>
          r.status === "pending"
            ? [h("button", { type: "button", class: "primary", onclick: () => void claim(r) }, "Start review")]
            : [h("a", { class: "button", href: `#/reviews/${r.id}` }, r.status === "in_review" ? "Open" : "View")],
        ),
      section("Submitted by me", "submitted", submitted, (r) => [h("a", { class: "button", href: `#/w/${r.session_id}` }, "Workspace")]),
    );
  };

  const claim = async (review: Review): Promise<void> => {
    try {
      await api.setReviewStatus(review.id, "in_review");
      location.hash = `#/reviews/${review.id}`;
    } catch (err) {
      fail(err);
      await load();
    }
  };

  void load();
}

function section(title: string, key: string, reviews: Review[], actions: (r: Review) => HTMLElement[]): HTMLElement {
  const list = h("ul", { class: "review-list", "data-section": key });
  for (const r of reviews) {
    list.append(
      h(
        "li",
        { class: "review-row", "data-review": r.id },
        h("span", { class: "review-title" }, r.title),
        statusBadge(r.status),
        h("span", { class: `priority ${r.priority}` }, r.priority),
        h("span", { class: "muted" }, `by user #${r.submitted_by} · ${formatTime(r.created_at)}`),
        h("span", { class: "row-actions" }, ...actions(r)),
      ),
    );
  }
  if (reviews.length === 0) list.append(h("li", { class: "empty" }, "Nothing here."));
  return h("section", { "aria-label": title }, h("h2", {}, title), list);
}
