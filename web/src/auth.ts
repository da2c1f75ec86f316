// Who is using the IDE: the login and registration screens, logout, and the profile
// settings where a user turns reviewing on or off.

import { api, ApiError, type User } from "./api";
import { formatTime, h, replace, toast } from "./dom";

let current: User | null = null;

export function currentUser(): User | null {
  return current;
}

export function setCurrentUser(user: User | null): void {
  current = user;
}

/** Ask the platform who the cookie belongs to; null when nobody is logged in. */
export async function loadCurrentUser(): Promise<User | null> {
  try {
    current = (await api.me()).data;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    current = null;
  }
  return current;
}

export async function logout(): Promise<void> {
  try {
    await api.logout();
  } catch {
    // already logged out or expired: the cookie is useless either way
  }
  current = null;
}

/** Login and registration share one screen: `mode` picks the form. */
export function renderAuth(root: HTMLElement, mode: "login" | "register", onDone: (user: User) => void): void {
  const error = h("p", { class: "form-error", role: "alert" });
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: mode === "login" ? "current-password" : "new-password",
    required: true,
    minlength: mode === "register" ? 8 : undefined,
  });
  const submit = h("button", { type: "submit", class: "primary" }, mode === "login" ? "Log in" : "Create account");
  const form = h(
    "form",
    { class: "auth-form", "aria-label": mode === "login" ? "Log in" : "Register" },
    h("h1", {}, mode === "login" ? "Log in" : "Create an account"),
    h("label", {}, h("span", {}, mode === "login" ? "Username or email" : "Username"), username),
    mode === "register" && h("label", {}, h("span", {}, "Email"), email),
    h("label", {}, h("span", {}, "Password"), password),
    error,
    submit,
    mode === "login"
      ? h("p", {}, "No account yet? ", h("a", { href: "#/register" }, "Register"))
      : h("p", {}, "Already registered? ", h("a", { href: "#/login" }, "Log in")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      if (mode === "register") {
        await api.register(username.value.trim(), email.value.trim(), password.value);
      }
      const { data } = await api.login(username.value.trim(), password.value);
      current = data.user;
      onDone(data.user);
    } catch (err) {
      error.textContent = err instanceof Error ? err.message : String(err);
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h("div", { class: "auth-page" }, form));
  username.focus();
}

/** The profile: who you are, and the reviewer switch (PUT /api/users/me/reviewer-status). */
export function renderSettings(root: HTMLElement, onChange: () => void): void {
  const user = current;
  if (!user) return;
  const toggle = h("input", { type: "checkbox", name: "is_reviewer" });
  toggle.checked = user.is_reviewer;
  const level = h("select", { name: "reviewer_level" });
  for (const n of [1, 2, 3, 4]) level.append(h("option", { value: String(n) }, `Level ${n}`));
  level.value = String(user.reviewer_level ?? 1);
  level.disabled = !user.is_reviewer;
  const save = h("button", { type: "submit", class: "primary" }, "Save");
  const form = h(
    "form",
    { class: "settings-form", "aria-label": "Reviewer settings" },
    h("h2", {}, "Reviewing"),
    h("p", { class: "muted" }, "Reviewers see pending reviews of other users, claim them and decide. Turning it off hands your open reviews back."),
    h("label", { class: "inline" }, toggle, h("span", {}, "I review other people's workspaces")),
    h("label", {}, h("span", {}, "Reviewer level"), level),
    save,
  );
  toggle.addEventListener("change", () => (level.disabled = !toggle.checked));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    try {
      const { data } = await api.setReviewer(toggle.checked, toggle.checked ? Number(level.value) : null);
      current = { ...user, ...data };
      toast(data.is_reviewer ? `Reviewer status on (level ${data.reviewer_level})` : "Reviewer status off");
      onChange();
      renderSettings(root, onChange);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), "error");
    } finally {
      save.disabled = false;
    }
  });
  replace(
    root,
    h(
      "div",
      { class: "page settings-page" },
      h("h1", {}, "Settings"),
      h(
        "dl",
        { class: "profile" },
        h("dt", {}, "Username"), h("dd", {}, user.username),
        h("dt", {}, "Email"), h("dd", {}, user.email ?? ""),
        h("dt", {}, "Member since"), h("dd", {}, formatTime(user.created_at)),
        h("dt", {}, "Reviewer"), h("dd", { "data-testid": "reviewer-state" }, user.is_reviewer ? `yes (level ${user.reviewer_level})` : "no"),
      ),
      form,
    ),
  );
}
