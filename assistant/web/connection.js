// The WebSocket to the daemon, kept open for as long as the page lives.
//
// A kiosk screen outlives daemon restarts, network blips and laptop sleeps, so a closed socket is
// never final: it reconnects with exponential backoff (with jitter, so a room of screens does not
// reconnect in lock-step) and reports its status for the page to show. Text frames are JSON events;
// binary frames are audio (decoded by protocol.js).

import { decodeAudioFrame } from "./protocol.js";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const CONNECT_TIMEOUT_MS = 8000;

export class Connection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.status = "idle"; // idle | connecting | open | waiting
    this.attempt = 0;
    this.retryAt = 0;
    this.retryTimer = 0;
    this.connectTimer = 0;
    this.closedByUs = false;
  }

  start() {
    this.closedByUs = false;
    this.connect();
  }

  stop() {
    this.closedByUs = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    if (this.ws) this.ws.close(1000, "page closed");
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a JSON message or a binary frame; false when not connected (the caller decides what that means). */
  send(message) {
    if (!this.open) return false;
    // A stalled socket must not grow the browser's send buffer without bound (microphone frames
    // arrive 50 times a second); dropping is better than a kiosk that runs out of memory.
    if (message instanceof ArrayBuffer && this.ws.bufferedAmount > 1 << 20) return false;
    this.ws.send(message instanceof ArrayBuffer ? message : JSON.stringify(message));
    return true;
  }

  setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status, retryAt: this.retryAt, attempt: this.attempt } }));
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.setStatus("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleRetry();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    // A connect that hangs (half-open network) counts as a failure.
    this.connectTimer = setTimeout(() => ws.readyState === WebSocket.CONNECTING && ws.close(), CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(this.connectTimer);
      this.setStatus("open");
    };
    ws.onmessage = (msg) => this.receive(msg.data);
    ws.onclose = (ev) => {
      clearTimeout(this.connectTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.dispatchEvent(new CustomEvent("close", { detail: { code: ev.code, reason: ev.reason } }));
      if (!this.closedByUs) this.scheduleRetry(ev.code);
    };
    ws.onerror = () => {
      // onclose follows and does the retry; nothing to add here.
    };
  }

  scheduleRetry(code) {
    // 1008 (policy: bad token or origin) will not heal by retrying quickly; back off to the maximum.
    const base = code === 1008 ? BACKOFF_MAX_MS : Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = base * (0.75 + Math.random() * 0.5);
    this.attempt++;
    this.retryAt = Date.now() + delay;
    this.setStatus("waiting");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  receive(data) {
    if (data instanceof ArrayBuffer) {
      let frame;
      try {
        frame = decodeAudioFrame(data);
      } catch (err) {
        console.warn("ignored a malformed audio frame:", err.message);
        return;
      }
      this.dispatchEvent(new CustomEvent("audio", { detail: frame }));
      return;
    }
    let event;
    try {
      event = JSON.parse(data);
    } catch (err) {
      console.warn("ignored a malformed message");
      return;
    }
    if (event.type === "hello") this.attempt = 0; // a healthy server: the next outage starts from a short wait
    this.dispatchEvent(new CustomEvent("event", { detail: event }));
  }
}
