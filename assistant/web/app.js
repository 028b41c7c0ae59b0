// The avatar page: wires the connection, the player, the microphone and the character together,
// and keeps the captions. It speaks only docs/protocol.md (messages built in protocol.js).
//
// URL parameters (all optional):
//   role=watcher    follow the kiosk session (a screen beside a kiosk with its own microphone and
//                   speaker); its audio is muted here (the mouth still moves) unless sound=on
//   token=...       the daemon's [server] token, when it listens beyond localhost
//   lang=zh|en      the page's own language, overriding the daemon's [general] language
//   mode=hands-free start in hands-free mode (else the last mode chosen on this screen, or push-to-talk)
//   debug=1         show each turn's latency trace in a corner (for tuning a kiosk)

import { Avatar } from "./avatar.js";
import { Captions } from "./captions.js";
import { Connection } from "./connection.js";
import { translator, pickLanguage } from "./i18n.js";
import { Microphone } from "./mic.js";
import { Player } from "./player.js";
import * as proto from "./protocol.js";

const params = new URLSearchParams(location.search);
const role = params.get("role") === "watcher" ? "watcher" : "visitor";
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const ui = {
  body: document.body,
  connText: $("conn-text"),
  stateText: $("state-text"),
  captions: $("captions"),
  greeting: $("greeting"),
  fallback: $("fallback"),
  sources: $("sources"),
  sourceList: $("source-list"),
  talk: $("talk"),
  talkLabel: $("talk-label"),
  levelBar: $("level-bar"),
  form: $("ask"),
  question: $("question"),
  stop: $("stop"),
  modePtt: $("mode-ptt"),
  modeHf: $("mode-hf"),
  toast: $("toast"),
  overlay: $("start-overlay"),
};

/** localStorage, which a locked-down kiosk browser may refuse: then nothing is remembered. */
function stored(key, value) {
  try {
    if (value === undefined) return localStorage.getItem(key);
    localStorage.setItem(key, value);
  } catch (err) {
    // private mode or storage disabled
  }
  return null;
}

let t = translator(params.get("lang") || "");
let language = pickLanguage(params.get("lang") || "");

const page = {
  session: "",
  serverState: "idle",
  turn: 0,
  talking: false, // push-to-talk button held
  mode: params.get("mode") === "hands-free" ? "hf" : stored("assistant.mode") || "ptt",
  paused: false, // hands-free microphone paused by the visitor
  micSequence: 0,
  micRateHz: proto.MIC_RATE_HZ, // what the daemon expects (hello.sample_rate_hz)
  stats: { audioFrames: 0, micFramesSent: 0, hellos: 0, sentencesHeard: 0, lastTrace: null, errors: [] },
};

// --- audio ---------------------------------------------------------------------------------

const ctx = new AudioContext({ latencyHint: "interactive" });
const player = new Player(ctx, {
  onSentence: (turn, index) => {
    captions.sentenceHeard(turn, index);
    if (index > 0) avatar.nod();
    page.stats.sentencesHeard++;
    updateLook();
  },
  onPosition: (pos) => {
    if (pos.turn > 0) conn.send(proto.playbackMessage(pos));
  },
  onIdle: () => {
    captions.renderAll();
    updateLook();
  },
});
const captions = new Captions(ui, player, () => ({ t, language }), (turn) => conn.send(proto.notHelpfulMessage(turn)));
/** A screen beside the kiosk (a watcher) is muted: the kiosk's own speaker plays the reply and
 * this page only lip-syncs. Asking a question here makes it a visitor, with its own voice. */
function applyRole(current) {
  player.out.gain.value = current === "watcher" && params.get("sound") !== "on" ? 0 : 1;
}
applyRole(role);

function ensureAudio() {
  if (ctx.state !== "running") ctx.resume().catch(() => {});
}
ctx.addEventListener("statechange", () => {
  ui.overlay.hidden = ctx.state === "running";
});
setTimeout(() => {
  ui.overlay.hidden = ctx.state === "running";
}, 300);
ui.overlay.addEventListener("click", ensureAudio);
document.addEventListener("pointerdown", ensureAudio, { capture: true });
document.addEventListener("keydown", ensureAudio, { capture: true });

const mic = new Microphone(ctx, () => page.micRateHz, {
  onFrame: (pcm) => {
    const sending = page.talking || (page.mode === "hf" && !page.paused && mic.ready);
    if (!sending || !conn.open) return;
    if (conn.send(proto.encodeAudioFrame(pcm, { sequence: page.micSequence++, sampleRateHz: mic.rateHz }))) page.stats.micFramesSent++;
  },
  onLevel: (level) => {
    const shown = Math.min(1, level * 6);
    ui.levelBar.style.width = `${Math.round(shown * 100)}%`;
    avatar.setLevel(page.talking || page.mode === "hf" ? level : 0);
  },
  onEnded: () => {
    toast(t("micError"));
    setMode("ptt");
  },
});

// --- the character ---------------------------------------------------------------------------

const avatar = new Avatar($("avatar"), () => player.mouth());

function updateLook() {
  let look;
  if (!conn.open || !page.session) look = "asleep";
  else if (player.playing) look = "speaking";
  else if (page.talking) look = "listening";
  else if (page.serverState === "listening") look = "listening";
  else if (page.serverState === "transcribing" || page.serverState === "thinking") look = "thinking";
  else if (page.serverState === "speaking") look = "speaking";
  else look = "idle";
  avatar.setLook(look);
  ui.body.dataset.look = look;
  ui.body.dataset.state = page.serverState;
  const stateKey = look === "asleep" ? "state_offline" : look === "speaking" ? "state_speaking" : `state_${look === "idle" ? "idle" : page.talking ? "listening" : page.serverState}`;
  ui.stateText.textContent = t(stateKey);
  ui.stop.hidden = !(player.playing || page.serverState === "thinking" || page.serverState === "transcribing" || page.serverState === "speaking");
}

// --- connection ------------------------------------------------------------------------------

const wsUrl = new URL("ws", location.href);
wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
wsUrl.search = "";
wsUrl.searchParams.set("role", role);
if (token) wsUrl.searchParams.set("token", token);
const conn = new Connection(wsUrl.href);
let countdown = 0;

let connStatus = { status: "connecting", retryAt: 0 };
function renderConn() {
  const { status, retryAt } = connStatus;
  if (status === "waiting") ui.connText.textContent = t("conn_waiting", { s: Math.max(1, Math.ceil((retryAt - Date.now()) / 1000)) });
  else ui.connText.textContent = t(`conn_${status === "idle" ? "connecting" : status}`);
}

conn.addEventListener("status", (e) => {
  connStatus = e.detail;
  ui.body.dataset.conn = connStatus.status;
  clearInterval(countdown);
  renderConn();
  if (connStatus.status === "waiting") countdown = setInterval(renderConn, 500);
  updateLook();
});

conn.addEventListener("close", () => {
  // Nothing more will come for what is playing, and the next server is a new session.
  page.session = "";
  player.stop();
  page.talking = false;
  ui.talk.classList.remove("active");
  updateLook();
});

conn.addEventListener("audio", (e) => {
  const frame = e.detail;
  page.stats.audioFrames++;
  const reply = captions.reply(frame.turn);
  if (reply) reply.audio = true;
  player.play(frame);
  updateLook();
});

conn.addEventListener("event", (e) => onEvent(e.detail));

function onEvent(ev) {
  switch (ev.type) {
    case "hello":
      page.stats.hellos++;
      if (ev.session !== page.session) player.reset();
      page.session = ev.session;
      if (ev.protocol !== proto.PROTOCOL_VERSION) console.warn(`the daemon speaks protocol ${ev.protocol}, this page ${proto.PROTOCOL_VERSION}`);
      if (ev.sample_rate_hz) page.micRateHz = ev.sample_rate_hz;
      applyRole(ev.role || role);
      setLanguage(ev.language);
      // Only a visitor has a mode (a watcher that sent one would become a visitor).
      if ((ev.role || role) === "visitor") conn.send(proto.modeMessage(page.mode === "hf" ? "hands-free" : "push-to-talk"));
      updateLook();
      break;
    case "state": {
      page.serverState = ev.state;
      if (ev.turn) page.turn = ev.turn;
      const reply = captions.reply(ev.turn);
      if (ev.state === "idle" && reply && !reply.over) {
        reply.over = true;
        captions.render(reply);
      }
      updateLook();
      break;
    }
    case "audio-start": {
      const reply = captions.reply(ev.turn);
      if (reply) reply.audio = true;
      break;
    }
    case "speech-start":
      // The visitor started talking: whatever is still playing gives way (barge-in). The daemon
      // interrupts a turn it is still working on; audio it has already sent is ours to stop.
      cutReply();
      captions.heardVisitor({ partial: true, text: "" });
      break;
    case "transcript":
      captions.heardVisitor({ partial: !ev.final, text: ev.text });
      if (ev.final) avatar.nod(); // "I've got your question"
      break;
    case "sources":
      captions.sources(ev.turn, ev.sources || []);
      break;
    case "reply-start":
      captions.startReply(ev.turn, ev.route);
      break;
    case "reply-delta": {
      const reply = captions.reply(ev.turn);
      if (reply) reply.text += ev.text;
      break;
    }
    case "sentence": {
      const reply = captions.reply(ev.turn) || captions.startReply(ev.turn, "generated");
      reply.sentences.set(ev.index, ev.text);
      if (player.current && player.current.turn === ev.turn && player.current.sentence === ev.index) captions.render(reply);
      break;
    }
    case "reply-end": {
      const reply = captions.reply(ev.turn);
      if (reply) {
        reply.ended = true;
        reply.text = ev.text || reply.text;
        captions.render(reply);
      }
      break;
    }
    case "interrupted": {
      if (player.turn === ev.turn) player.stop();
      const reply = captions.reply(ev.turn);
      if (reply) {
        reply.interrupted = true;
        reply.ended = true;
        reply.heardText = ev.heard_text || "";
        captions.render(reply);
      }
      updateLook();
      break;
    }
    case "error":
      page.stats.errors.push(ev.code);
      if (page.stats.errors.length > 20) page.stats.errors.shift();
      captions.dropEmptyQuestion();
      if (ev.code === "asr-empty") toast(t("heardNothing"));
      else toast(t("error"), ev.code);
      break;
    case "trace":
      page.stats.lastTrace = ev;
      if (params.get("debug")) showTrace(ev);
      break;
    default:
      break; // audio-end, speech-end: the audio frames themselves drive the page
  }
}

/** The visitor cut the reply short (by voice, button or a new question): stop it and say so. */
function cutReply() {
  if (!player.playing) return;
  const pos = player.position();
  player.stop();
  conn.send(proto.interruptMessage(pos.turn, pos.playedMs));
  const reply = captions.reply(pos.turn);
  if (reply) {
    reply.interrupted = true;
    captions.render(reply);
  }
  updateLook();
}

function showTrace(trace) {
  let el = $("trace");
  if (!el) {
    el = document.createElement("pre");
    el.id = "trace";
    el.className = "trace";
    document.body.append(el);
  }
  const stages = ["endpoint", "transcript", "retrieve", "first_token", "first_sentence", "first_audio", "total"];
  el.textContent = [`turn ${trace.turn} · ${trace.route}`, ...stages.filter((k) => trace[`${k}_ms`] != null).map((k) => `${k.padEnd(15)}${Math.round(trace[`${k}_ms`])} ms`)].join("\n");
}

let toastTimer = 0;
function toast(message, code) {
  ui.toast.textContent = code ? `${message} (${code})` : message;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    ui.toast.hidden = true;
  }, 4000);
}

// --- language --------------------------------------------------------------------------------

function setLanguage(lang) {
  if (params.get("lang")) lang = params.get("lang");
  language = pickLanguage(lang);
  t = translator(language);
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  setMode(page.mode, { quiet: true });
  renderConn();
  updateLook();
}

// --- input -----------------------------------------------------------------------------------

function interrupt() {
  if (player.playing) cutReply();
  else conn.send(proto.interruptMessage(page.turn)); // still thinking: nothing was heard yet
  updateLook();
}

ui.stop.addEventListener("click", interrupt);

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.question.value.trim();
  if (!text) return;
  ensureAudio();
  if (!conn.open) {
    toast(t("notConnected"));
    return;
  }
  cutReply();
  conn.send(proto.textMessage(text));
  captions.typed(text);
  ui.question.value = "";
});

async function talkStart() {
  if (page.talking) return;
  ensureAudio();
  if (!conn.open) {
    toast(t("notConnected"));
    return;
  }
  cutReply();
  page.talking = true;
  ui.talk.classList.add("active");
  ui.talkLabel.textContent = t("talking");
  conn.send(proto.talkStartMessage());
  updateLook();
  try {
    await mic.open();
  } catch (err) {
    console.warn("microphone:", err.message);
    toast(t("micError"));
    talkEnd();
  }
}

function talkEnd() {
  if (!page.talking) return;
  page.talking = false;
  ui.talk.classList.remove("active");
  ui.talkLabel.textContent = t("talk");
  conn.send(proto.talkEndMessage());
  avatar.setLevel(0);
  updateLook();
}

async function setMode(mode, { quiet = false } = {}) {
  page.mode = mode;
  stored("assistant.mode", mode);
  ui.body.dataset.mode = mode;
  ui.modePtt.setAttribute("aria-pressed", String(mode === "ptt"));
  ui.modeHf.setAttribute("aria-pressed", String(mode === "hf"));
  ui.talkLabel.textContent = mode === "hf" ? t(page.paused ? "handsFree" : "hintHandsFree") : t("talk");
  $("greeting-hint") && ($("greeting-hint").textContent = t(mode === "hf" ? "hintHandsFree" : "hint"));
  if (quiet) return;
  if (conn.open) conn.send(proto.modeMessage(mode === "hf" ? "hands-free" : "push-to-talk"));
  if (mode === "hf") {
    page.paused = false;
    ui.talkLabel.textContent = t("hintHandsFree");
    try {
      await mic.open();
    } catch (err) {
      console.warn("microphone:", err.message);
      toast(t("micError"));
      setMode("ptt");
    }
  }
}

ui.modePtt.addEventListener("click", () => setMode("ptt"));
ui.modeHf.addEventListener("click", () => {
  ensureAudio();
  setMode("hf");
});

ui.talk.addEventListener("pointerdown", (e) => {
  if (page.mode === "hf") {
    // In hands-free mode the button pauses and resumes listening.
    page.paused = !page.paused;
    ui.talkLabel.textContent = page.paused ? t("handsFree") : t("hintHandsFree");
    ui.talk.classList.toggle("paused", page.paused);
    return;
  }
  ui.talk.setPointerCapture(e.pointerId);
  talkStart();
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) ui.talk.addEventListener(type, talkEnd);
// Space bar = the talk button, unless the visitor is typing.
document.addEventListener("keydown", (e) => {
  if (e.code === "Space" && !e.repeat && document.activeElement !== ui.question && page.mode === "ptt") {
    e.preventDefault();
    talkStart();
  } else if (e.code === "Escape") {
    interrupt();
  }
});
document.addEventListener("keyup", (e) => {
  if (e.code === "Space" && page.mode === "ptt") talkEnd();
});

// --- start -----------------------------------------------------------------------------------

setLanguage(params.get("lang") || "");
conn.start();
if (page.mode === "hf") setMode("hf");
updateLook();

// For tests and for whoever debugs a kiosk from the console.
window.assistantPage = { page, player, conn, mic, ctx, avatar, captions };
