// The owner's page (/admin): log in with the owner's token, see the unanswered queue grouped by
// meaning, and answer, add to an entry or dismiss each group. Everything travels on the WebSocket
// (docs/protocol.md, "The owner's page"); the token is kept in this page's memory only, and sent
// again after a reconnect.

import { Connection } from "./connection.js";
import { adminTranslator } from "./admin-i18n.js";

const $ = (id) => document.getElementById(id);
let t = adminTranslator();
let ownerToken = "";
let loggedIn = false;
let lastQueue = null;
let lastDone = null;
let shownDone = null; // the edit the status line describes (redrawn in the other language)

const params = new URLSearchParams(location.search);
const wsUrl = new URL("ws", location.href);
wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
wsUrl.search = "";
const kioskToken = params.get("token"); // the [server] token, when the daemon listens beyond localhost
if (kioskToken) wsUrl.searchParams.set("token", kioskToken);
const conn = new Connection(wsUrl.href);

function applyLanguage(language) {
  t = adminTranslator(language);
  document.documentElement.lang = t.lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("conn-text").textContent = t(`conn_${conn.status === "idle" ? "connecting" : conn.status}`);
  if (lastQueue) renderQueue(lastQueue);
  if (shownDone) $("applied").textContent = describeDone(shownDone);
}

function notice(text) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = !text;
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString(t.lang === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "short",
    timeStyle: "short",
  });
}

function renderDays(days) {
  const list = $("days");
  list.replaceChildren();
  const most = Math.max(1, ...days.map((d) => d.unanswered));
  for (const d of days) {
    const li = document.createElement("li");
    const rate = d.rate === null || d.rate === undefined ? t("rateUnknown") : `${Math.round(d.rate * 1000) / 10}%`;
    li.setAttribute("aria-label", t("dayLabel", { day: d.day, n: d.unanswered, turns: d.turns, rate }));
    li.title = li.getAttribute("aria-label");
    const share = document.createElement("span");
    share.className = "rate";
    share.textContent = rate;
    const n = document.createElement("span");
    n.className = "count";
    n.textContent = String(d.unanswered);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.height = `${(80 * d.unanswered) / most}%`;
    const day = document.createElement("span");
    day.textContent = d.day.slice(5); // MM-DD; the whole date is the label
    for (const el of [share, n, bar, day]) el.setAttribute("aria-hidden", "true");
    li.append(share, n, bar, day);
    list.append(li);
  }
}

function renderGroup(group) {
  const node = $("group-template").content.firstElementChild.cloneNode(true);
  node.dataset.group = group.id;
  for (const el of node.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  const top = group.phrasings[0]?.question ?? "";
  node.querySelector(".group-question").textContent = top;
  // "Asked 1 times" read wrong: English needs its own line for one
  node.querySelector(".group-meta").textContent = t(group.count === 1 ? "metaOnce" : "meta", {
    n: group.count,
    langs: group.languages.join(", ") || "?",
    first: when(group.first_s),
    last: when(group.last_s),
  });
  const phrasings = node.querySelector(".group-phrasings");
  for (const p of group.phrasings) {
    const li = document.createElement("li");
    li.textContent = t("phrasingCount", { q: p.question, n: p.count });
    phrasings.append(li);
  }
  node.querySelector(".group-reply q").textContent = group.reply;
  const answer = node.querySelector(".group-answer");
  answer.question.value = top;
  const id = `g-${group.id}`;
  answer.question.id = `${id}-q`;
  answer.answer.id = `${id}-a`;
  const [qLabel, aLabel] = answer.querySelectorAll("label");
  qLabel.htmlFor = answer.question.id;
  aLabel.htmlFor = answer.answer.id;
  answer.addEventListener("submit", (e) => {
    e.preventDefault();
    conn.send({ type: "owner-answer", group: group.id, question: answer.question.value, answer: answer.answer.value });
  });
  const add = node.querySelector(".group-add");
  const select = add.entry;
  select.id = `${id}-e`;
  add.querySelector("label").htmlFor = select.id;
  const faqs = group.candidates.filter((c) => c.kind === "faq");
  for (const c of faqs) {
    const option = document.createElement("option");
    option.value = c.id;
    option.textContent = t("candidate", { title: c.title || c.id, id: c.id, score: c.score.toFixed(2) });
    select.append(option);
  }
  if (!faqs.length) {
    const option = document.createElement("option");
    option.textContent = t("noCandidates");
    option.value = "";
    select.append(option);
    select.disabled = true;
    add.querySelector("button").disabled = true;
  }
  add.addEventListener("submit", (e) => {
    e.preventDefault();
    if (select.value) conn.send({ type: "owner-add", group: group.id, entry: select.value });
  });
  node.querySelector(".group-dismiss").addEventListener("click", () => {
    conn.send({ type: "owner-dismiss", group: group.id });
  });
  return node;
}

function renderQueue(queue) {
  lastQueue = queue;
  renderDays(queue.days);
  const groups = $("groups");
  // keep what the owner is typing when the queue is redrawn around it
  const typed = new Map();
  for (const el of groups.querySelectorAll(".admin-group")) {
    typed.set(el.dataset.group, el.querySelector(".group-answer").answer.value);
  }
  groups.replaceChildren(...queue.groups.map(renderGroup));
  for (const el of groups.querySelectorAll(".admin-group")) {
    const text = typed.get(el.dataset.group);
    if (text) el.querySelector(".group-answer").answer.value = text;
  }
  $("empty").hidden = queue.groups.length > 0;
}

function describeDone(done) {
  let text = t(`done_${done.action}`, { entry: done.entry });
  if (done.applied === "reloaded") text += t("applied_reloaded");
  else if (done.applied === "pending") text += t("applied_pending");
  else if (done.applied) text += t("applied_failed", { why: done.applied });
  return text;
}

function showBoard() {
  $("login").hidden = true;
  $("board").hidden = false;
}

conn.addEventListener("status", (e) => {
  document.body.dataset.conn = e.detail.status;
  $("conn-text").textContent = t(`conn_${e.detail.status}`);
  if (e.detail.status === "open" && ownerToken) conn.send({ type: "owner-hello", token: ownerToken });
});

conn.addEventListener("event", (e) => {
  const ev = e.detail;
  switch (ev.type) {
    case "hello":
      applyLanguage(ev.language);
      break;
    case "owner-ready":
      loggedIn = true;
      notice("");
      showBoard();
      break;
    case "owner-queue":
      renderQueue(ev);
      if (lastDone) {
        shownDone = lastDone;
        $("applied").textContent = describeDone(shownDone);
        lastDone = null;
        $("refresh").focus();
      }
      break;
    case "owner-done":
      lastDone = ev;
      break;
    case "error": {
      const key = `err_${ev.code}`;
      const text = t(key, { msg: ev.message });
      notice(text === key ? t("err_other", { msg: ev.message }) : text);
      if (ev.code === "owner-token" || ev.code === "owner-disabled") {
        ownerToken = "";
        loggedIn = false;
        $("token").focus();
      }
      break;
    }
    default:
      break; // the kiosk's own events: not this page's business
  }
});

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  ownerToken = $("token").value;
  $("token").value = "";
  notice("");
  conn.send({ type: "owner-hello", token: ownerToken });
});

$("refresh").addEventListener("click", () => loggedIn && conn.send({ type: "owner-queue" }));

$("lang").addEventListener("click", () => applyLanguage(t.lang === "zh" ? "en" : "zh"));

applyLanguage();
conn.start();
