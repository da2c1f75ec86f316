// Small DOM helpers: element creation, a modal dialog that returns a promise, toasts.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

/** Create an element: `h("button", { class: "x", onclick: fn }, "Save")`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value as EventListener);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replace everything inside `el`. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, ...children);
}

export interface Field {
  name: string;
  label: string;
  value?: string;
  type?: "text" | "textarea" | "select";
  options?: string[];
  required?: boolean;
}

/** A modal form; resolves with the values, or null when cancelled (Escape, Cancel). */
export function askForm(
  title: string,
  fields: Field[],
  submitLabel = "OK",
): Promise<Record<string, string> | null> {
  return new Promise((resolve) => {
    const inputs = new Map<string, HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>();
    const form = h("form", { class: "dialog-form" });
    for (const field of fields) {
      let input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
      if (field.type === "textarea") {
        input = h("textarea", { name: field.name, rows: 4 });
        input.value = field.value ?? "";
      } else if (field.type === "select") {
        input = h("select", { name: field.name });
        for (const option of field.options ?? []) input.append(h("option", { value: option }, option));
        input.value = field.value ?? field.options?.[0] ?? "";
      } else {
        input = h("input", { name: field.name, type: "text", autocomplete: "off" });
        input.value = field.value ?? "";
      }
      if (field.required) input.required = true;
      inputs.set(field.name, input);
      form.append(h("label", {}, h("span", {}, field.label), input));
    }
    const close = openDialog(title, form, [
      { label: "Cancel", value: null },
      { label: submitLabel, value: "submit", primary: true, submit: true },
    ], (choice) => {
      if (choice !== "submit") return resolve(null);
      const values: Record<string, string> = {};
      for (const [name, input] of inputs) values[name] = input.value;
      resolve(values);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (form.reportValidity()) close("submit");
    });
    const first = inputs.values().next().value;
    if (first) {
      first.focus();
      // a folder prefix ("pkg/") is a start to type after; anything else is there to replace
      if (first instanceof HTMLInputElement) {
        if (first.value.endsWith("/")) first.setSelectionRange(first.value.length, first.value.length);
        else first.select();
      }
    }
  });
}

export interface Choice<T> {
  label: string;
  value: T;
  primary?: boolean;
  danger?: boolean;
  submit?: boolean;
}

/** A modal question with buttons; resolves with the chosen button's value (Escape: `dismiss`). */
export function choose<T>(title: string, message: string | Node, choices: Choice<T>[], dismiss: T): Promise<T> {
  return new Promise((resolve) => {
    const body = typeof message === "string" ? h("p", {}, message) : message;
    openDialog(title, body, choices, (value) => resolve(value === undefined ? dismiss : value));
  });
}

export function confirmAction(title: string, message: string, label = "Delete"): Promise<boolean> {
  return choose(title, message, [
    { label: "Cancel", value: false },
    { label, value: true, danger: true },
  ], false);
}

function openDialog<T>(
  title: string,
  body: Node,
  choices: Choice<T>[],
  done: (value: T | undefined) => void,
): (value: T | undefined) => void {
  const previous = document.activeElement as HTMLElement | null;
  const dialog = h("div", { class: "dialog", role: "dialog", "aria-modal": "true", "aria-label": title });
  const backdrop = h("div", { class: "backdrop" }, dialog);
  let finished = false;
  const close = (value: T | undefined): void => {
    if (finished) return;
    finished = true;
    backdrop.remove();
    document.removeEventListener("keydown", onKey, true);
    previous?.focus?.();
    done(value);
  };
  const onKey = (event: KeyboardEvent): void => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close(undefined);
    }
  };
  const buttons = h("div", { class: "dialog-buttons" });
  for (const choice of choices) {
    const cls = choice.primary ? "primary" : choice.danger ? "danger" : "";
    const button = h("button", { type: choice.submit ? "submit" : "button", class: cls }, choice.label);
    // A submit button submits its form (Enter in a field too); the form's handler closes.
    if (!choice.submit) button.addEventListener("click", () => close(choice.value));
    buttons.append(button);
  }
  if (body instanceof HTMLFormElement) body.append(buttons);
  dialog.append(h("h2", {}, title), body);
  if (!(body instanceof HTMLFormElement)) dialog.append(buttons);
  document.addEventListener("keydown", onKey, true);
  document.body.append(backdrop);
  const focusTarget = buttons.querySelector<HTMLButtonElement>("button.primary, button.danger");
  if (!(body instanceof HTMLFormElement)) (focusTarget ?? buttons.querySelector("button"))?.focus();
  return close;
}

/** A short message in the corner; errors stay longer. */
export function toast(message: string, kind: "info" | "error" = "info"): void {
  let host = document.getElementById("toasts");
  if (!host) {
    host = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(host);
  }
  const item = h("div", { class: `toast ${kind}` }, message);
  host.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 3500);
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
