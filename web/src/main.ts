// The IDE's entry point: the top bar and a hash router over the screens. Hash routes
// (#/workspaces, #/w/<id>, #/reviews, #/reviews/<id>, #/settings, #/login) need nothing from
// the server that serves the page, so any static host under any prefix works. The heavy
// screens (editor, terminal) load as their own chunks when first opened.

import "./style.css";
import { setUnauthenticatedHandler, type User } from "./api";
import { currentUser, loadCurrentUser, logout, renderAuth, renderSettings, setCurrentUser } from "./auth";
import { h, replace, toast } from "./dom";
import { renderReviewQueue } from "./reviews";
import { renderWorkspaces } from "./workspaces";

interface MountedView {
  dispose(): void;
  canLeave?(): Promise<boolean>;
}

const app = document.getElementById("app") as HTMLElement;
const view = h("div", { id: "view" });
const nav = h("nav", { class: "topbar", "aria-label": "Main" });
replace(app, nav, view);

let mounted: MountedView | null = null;
let currentHash = location.hash;
let afterLogin = "#/workspaces";
let reverting = false;
let generation = 0;

function renderNav(user: User | null): void {
  replace(
    nav,
    h("a", { class: "brand", href: "#/workspaces" }, "CEP IDE"),
    user && h("a", { href: "#/workspaces", "data-nav": "workspaces" }, "Workspaces"),
    user && h("a", { href: "#/reviews", "data-nav": "reviews" }, "Reviews"),
    user && h("a", { href: "#/settings", "data-nav": "settings" }, "Settings"),
    h("span", { class: "spacer" }),
    user && h("span", { class: "whoami", "data-testid": "whoami" }, user.username, user.is_reviewer ? " · reviewer" : ""),
    user &&
      h("button", {
        type: "button",
        onclick: async () => {
          if (mounted?.canLeave && !(await mounted.canLeave())) return;
          mounted?.dispose();
          mounted = null;
          await logout();
          location.hash = "#/login";
        },
      }, "Log out"),
  );
  const section = location.hash.split("/")[1] ?? "";
  for (const link of nav.querySelectorAll<HTMLAnchorElement>("[data-nav]")) {
    const match = link.dataset.nav === section || (link.dataset.nav === "workspaces" && section === "w");
    link.classList.toggle("active", match);
  }
}

async function route(): Promise<void> {
  const token = ++generation; // a newer navigation wins over a slow older one
  mounted?.dispose();
  mounted = null;
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const [screen, arg] = parts;
  document.title = "CEP IDE";
  const user = currentUser();
  if (screen === "login" || screen === "register") {
    renderNav(null);
    if (user) {
      location.hash = afterLogin;
      return;
    }
    renderAuth(view, screen, () => {
      location.hash = afterLogin;
      afterLogin = "#/workspaces";
    });
    return;
  }
  if (!user) {
    afterLogin = location.hash || "#/workspaces";
    location.hash = "#/login";
    return;
  }
  renderNav(user);
  switch (screen) {
    case "w": {
      const { renderWorkspace } = await import("./workspace");
      if (token !== generation) return;
      mounted = renderWorkspace(view, arg, onUnauthenticated);
      break;
    }
    case "reviews":
      if (arg) {
        const { renderReviewDetail } = await import("./review-view");
        if (token !== generation) return;
        renderReviewDetail(view, Number(arg), user);
      } else {
        renderReviewQueue(view, user);
      }
      break;
    case "settings":
      renderSettings(view, () => renderNav(currentUser()));
      break;
    default:
      renderWorkspaces(view);
  }
}

function onUnauthenticated(): void {
  if (!currentUser()) return;
  setCurrentUser(null);
  toast("Your login expired: please log in again", "error");
  afterLogin = location.hash;
  location.hash = "#/login";
}

window.addEventListener("hashchange", async () => {
  if (reverting) {
    reverting = false;
    return;
  }
  if (mounted?.canLeave && !(await mounted.canLeave())) {
    reverting = true;
    location.hash = currentHash; // stay: the user cancelled leaving unsaved changes
    return;
  }
  currentHash = location.hash;
  await route();
});

setUnauthenticatedHandler(onUnauthenticated);
try {
  await loadCurrentUser();
} catch (err) {
  toast(err instanceof Error ? err.message : String(err), "error");
}
await route();
performance.mark("ide:interactive"); // the first screen is drawn (bench/browser.py reads it)
