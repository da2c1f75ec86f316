// The terminal: xterm.js on the platform's terminal WebSocket in channel mode.
//
// Protocol (subprotocol "channel.v1.terminal"): every frame is binary; byte 0 is the channel,
// 0 = terminal data (both ways), 1 = one JSON control message. We send resize / ping / pause /
// resume; the platform sends status / error / pong. The socket authenticates with the login
// cookie (same origin). Flow control follows xterm.js's guide: bytes handed to term.write but
// not yet parsed are counted; above HIGH_WATER we ask the platform to pause, below LOW_WATER to
// resume. A dropped connection is retried with backoff; the platform replays recent output on
// reattach, so the screen is reset first.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import { h } from "./dom";

export const SUBPROTOCOL = "channel.v1.terminal";
const DATA = 0;
const CONTROL = 1;
const HIGH_WATER = 128 * 1024; // bytes written but not yet parsed before we ask for a pause
const LOW_WATER = 16 * 1024;
const QUIET_MS = 1500; // output stopped this long: files the shell wrote are synced back
const PING_MS = 25_000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

/** Close codes after which reconnecting cannot help. */
const FINAL_CLOSES: Record<number, string> = {
  4401: "You are logged out.",
  4403: "Only the owner of this workspace may open its terminal.",
  4404: "This workspace does not exist.",
};

interface ControlMessage {
  type: string;
  state?: string;
  code?: number | null;
  message?: string;
}

export interface TerminalOptions {
  workspaceId: string;
  /** Output went quiet after some activity: a good moment to refresh the file tree. */
  onQuiet?: () => void;
  /** The environment became ready or the shell exited: the workspace status changed. */
  onStateChange?: () => void;
  onUnauthenticated?: () => void;
}

export class TerminalPane {
  readonly element: HTMLElement;
  private readonly screen: HTMLElement;
  private readonly stateLabel: HTMLElement;
  private readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();
  private socket: WebSocket | null = null;
  private attempt = 0;
  private disposed = false;
  private exited = false;
  private paused = false;
  private pending = 0;
  private sawOutput = false;
  private quietTimer = 0;
  private retryTimer = 0;
  private pingTimer = 0;
  private lastPong = 0;
  private readonly resizeObserver: ResizeObserver;

  constructor(private readonly options: TerminalOptions) {
    this.stateLabel = h("span", { class: "terminal-state", "data-testid": "terminal-state" }, "not connected");
    this.screen = h("div", { class: "terminal-screen" });
    this.element = h(
      "div",
      { class: "terminal-pane" },
      h("div", { class: "pane-head" }, h("span", { class: "pane-title" }, "Terminal"), this.stateLabel),
      this.screen,
    );
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      fontSize: 13,
      scrollback: 5000,
      theme: { background: "#1e1e1e" },
    });
    this.term.loadAddon(this.fit);
    this.term.onData((data) => this.input(this.encoder.encode(data)));
    // mouse reports that are not valid UTF-8 arrive as a binary string: one byte per char
    this.term.onBinary((data) => this.input(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ cols, rows }) => this.control({ type: "resize", cols, rows }));
    this.resizeObserver = new ResizeObserver(() => this.refit());
  }

  /** Call once the element is in the document: xterm measures its container. */
  start(): void {
    this.term.open(this.screen);
    this.refit();
    this.resizeObserver.observe(this.screen);
    this.connect();
  }

  focus(): void {
    this.term.focus();
  }

  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.quietTimer);
    window.clearInterval(this.pingTimer);
    this.resizeObserver.disconnect();
    this.socket?.close(1000, "closed by the user");
    this.term.dispose();
  }

  private refit(): void {
    if (this.screen.clientWidth === 0 || this.screen.clientHeight === 0) return; // hidden
    try {
      this.fit.fit(); // fires onResize (and so a resize message) when the size changed
    } catch {
      // not measurable yet (fonts loading); the next resize observation fits
    }
  }

  private connect(): void {
    if (this.disposed) return;
    this.exited = false;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = `cols=${this.term.cols}&rows=${this.term.rows}`;
    const url = `${scheme}://${location.host}/api/terminal/ws/${encodeURIComponent(this.options.workspaceId)}?${query}`;
    this.setState(this.attempt === 0 ? "connecting…" : "reconnecting…");
    const socket = new WebSocket(url, [SUBPROTOCOL]);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      if (socket.protocol !== SUBPROTOCOL) {
        this.setState("the platform does not speak the channel protocol", "error");
        socket.close(1000);
        return;
      }
      this.paused = false;
      this.lastPong = Date.now();
      this.term.reset(); // the platform replays recent output on (re)attach
      this.control({ type: "resize", cols: this.term.cols, rows: this.term.rows });
      window.clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => this.keepAlive(), PING_MS);
    };
    socket.onmessage = (event) => {
      if (!(event.data instanceof ArrayBuffer) || event.data.byteLength === 0) return;
      const frame = new Uint8Array(event.data);
      if (frame[0] === DATA) this.output(frame.subarray(1));
      else if (frame[0] === CONTROL) this.onControl(frame.subarray(1));
    };
    socket.onclose = (event) => this.onClose(socket, event);
  }

  private keepAlive(): void {
    if (Date.now() - this.lastPong > 2 * PING_MS + 10_000) {
      this.socket?.close(4000, "no pong"); // a dead connection: reconnect
      return;
    }
    this.control({ type: "ping" });
  }

  private onClose(socket: WebSocket, event: CloseEvent): void {
    window.clearInterval(this.pingTimer);
    if (socket !== this.socket || this.disposed) return;
    this.socket = null;
    const final = FINAL_CLOSES[event.code];
    if (final) {
      this.setState(final, "error");
      this.term.write(`\r\n\x1b[31m${final}\x1b[0m\r\n`);
      if (event.code === 4401) this.options.onUnauthenticated?.();
      return;
    }
    if (this.exited) {
      this.term.write("\r\n\x1b[2m[the shell exited: press Enter for a new one]\x1b[0m\r\n");
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (event.code === 4429 ? 4 : 1);
    this.attempt += 1;
    const why = event.code === 4429 ? "too many terminals" : event.reason || `connection closed (${event.code})`;
    this.setState(`${why}; reconnecting in ${Math.round(delay / 1000)} s`, "warn");
    this.retryTimer = window.setTimeout(() => this.connect(), delay * (0.8 + Math.random() * 0.4));
  }

  private onControl(payload: Uint8Array): void {
    let message: ControlMessage;
    try {
      message = JSON.parse(this.decoder.decode(payload)) as ControlMessage;
    } catch {
      return; // a control frame we cannot read is not worth breaking the terminal over
    }
    if (message.type === "pong") {
      this.lastPong = Date.now();
    } else if (message.type === "status") {
      if (message.state === "ready") {
        if (performance.getEntriesByName("ide:terminal-ready").length === 0) performance.mark("ide:terminal-ready");
        this.attempt = 0;
        this.setState("ready", "ok");
        this.options.onStateChange?.();
      } else if (message.state === "starting") {
        this.setState("starting the environment…");
      } else if (message.state === "exited") {
        this.exited = true;
        this.setState(`exited${message.code !== null && message.code !== undefined ? ` (code ${message.code})` : ""}`, "warn");
        this.options.onStateChange?.();
      }
    } else if (message.type === "error") {
      this.setState(message.message ?? "error", "error");
    }
  }

  private output(data: Uint8Array): void {
    const size = data.byteLength;
    this.pending += size;
    if (!this.paused && this.pending > HIGH_WATER) {
      this.paused = true;
      this.control({ type: "pause" });
    }
    // xterm keeps a reference; the frame's buffer is ours alone, so no copy is needed
    this.term.write(data, () => {
      this.pending -= size;
      if (this.paused && this.pending < LOW_WATER) {
        this.paused = false;
        this.control({ type: "resume" });
      }
    });
    this.sawOutput = true;
    window.clearTimeout(this.quietTimer);
    this.quietTimer = window.setTimeout(() => {
      if (!this.sawOutput) return;
      this.sawOutput = false;
      this.options.onQuiet?.();
    }, QUIET_MS);
  }

  private input(bytes: Uint8Array): void {
    if (this.exited && this.socket === null) {
      if (bytes.includes(13)) {
        this.attempt = 0;
        this.connect();
      }
      return;
    }
    this.send(DATA, bytes);
  }

  private control(message: ControlMessage | { type: string; cols: number; rows: number }): void {
    this.send(CONTROL, this.encoder.encode(JSON.stringify(message)));
  }

  private send(channel: number, payload: Uint8Array): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || socket.protocol !== SUBPROTOCOL) return;
    const frame = new Uint8Array(payload.byteLength + 1);
    frame[0] = channel;
    frame.set(payload, 1);
    socket.send(frame);
  }

  private setState(text: string, kind: "" | "ok" | "warn" | "error" = ""): void {
    this.stateLabel.textContent = text;
    this.stateLabel.className = `terminal-state ${kind}`;
  }
}
