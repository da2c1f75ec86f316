// Test page, not part of the IDE: the STOCK xterm.js AttachAddon on the platform's terminal
// WebSocket in plain mode (no subprotocol). It proves that plain mode is exactly what the
// addon speaks: every server frame is terminal text, every client frame is input.
// Query: ?session=<workspace id>[&ticket=<ticket>]; without a ticket the login cookie is used.

import { Terminal } from "@xterm/xterm";
import { AttachAddon } from "@xterm/addon-attach";
import "@xterm/xterm/css/xterm.css";

const params = new URLSearchParams(location.search);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const query = new URLSearchParams({ cols: "100", rows: "24" });
const ticket = params.get("ticket");
if (ticket) query.set("ticket", ticket);
const url = `${scheme}://${location.host}/api/terminal/ws/${params.get("session")}?${query}`;

const term = new Terminal({ cols: 100, rows: 24 });
term.open(document.getElementById("terminal") as HTMLElement);
const socket = new WebSocket(url);
const state = document.getElementById("state") as HTMLElement;
socket.addEventListener("open", () => (state.textContent = `open protocol=${JSON.stringify(socket.protocol)}`));
socket.addEventListener("close", (event) => (state.textContent = `closed ${event.code} ${event.reason}`));
term.loadAddon(new AttachAddon(socket));
term.focus();

// What the screen shows, for the test to read (the whole buffer, scrollback included).
(window as unknown as { screenText: () => string }).screenText = () => {
  const buffer = term.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i)?.translateToString(true) ?? "");
  return lines.join("\n");
};
