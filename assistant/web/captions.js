// The words on screen: the visitor's question (partial, then final), the reply as it is heard,
// the sources of the answer and the "I don't know" notice.
//
// Captions follow the voice, not the text stream: a reply's sentences appear as their audio is
// heard (the player says when), so the caption never runs ahead of the character's mouth. The
// history on screen is bounded (a kiosk tab runs for days).

const MAX_BUBBLES = 10;
const KEEP_REPLIES = 4; // per-turn bookkeeping kept for late events

// Han, kana, Hangul and the full-width punctuation of CJK text: no space goes next to them.
const CJK = /[\u2e80-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]/u;

/**
 * What goes between two sentences of a caption so that it reads as written text: a space between
 * Latin-script sentences ("…cover that. Please ask…"), nothing where either side is Chinese or
 * already has the space. By the text itself, not the page's language: a Chinese page shows English
 * replies too.
 */
export function separator(before, after) {
  if (!before || !after || /\s$/u.test(before) || /^\s/u.test(after)) return "";
  return CJK.test(before.slice(-1)) || CJK.test(after[0]) ? "" : " ";
}

export class Captions {
  /**
   * @param {{captions: Element, greeting: Element, fallback: Element, sources: Element, sourceList: Element}} ui
   * @param {import("./player.js").Player} player
   * @param {() => {t: Function, language: string}} i18n  the current translator and page language
   * @param {(turn: number) => boolean} [onNotHelpful]  the visitor marked a reply "not helpful" (sends it)
   */
  constructor(ui, player, i18n, onNotHelpful = () => false) {
    this.ui = ui;
    this.player = player;
    this.i18n = i18n;
    this.onNotHelpful = onNotHelpful;
    this.replies = new Map(); // turn -> {bubble, sentences, heard, text, route, ended, over, interrupted, audio, sources}
    this.question = null; // the visitor's bubble still open for partial transcripts
    this.latest = 0; // the turn of the newest reply: the sources panel is its
    this.pendingSources = { turn: 0, list: [] }; // a turn's sources come just before its reply-start
  }

  reply(turn) {
    return this.replies.get(turn);
  }

  bubble(kind) {
    const { t } = this.i18n();
    const el = document.createElement("div");
    el.className = `bubble ${kind}`;
    const who = document.createElement("span");
    who.className = "who";
    who.dataset.i18n = kind === "you" ? "you" : "assistant";
    who.textContent = t(who.dataset.i18n);
    const text = document.createElement("span");
    text.className = "text";
    el.append(who, text);
    const box = this.ui.captions;
    // A new question turns the previous exchange into history (smaller, dimmer).
    if (kind === "you") for (const old of box.querySelectorAll(".bubble:not(.old)")) old.classList.add("old");
    box.append(el);
    this.ui.greeting.remove(); // a no-op after the first time
    while (box.children.length > MAX_BUBBLES) box.firstElementChild.remove();
    el.scrollIntoView({ block: "end", behavior: "smooth" });
    return el;
  }

  /** The visitor's words: a partial transcript updates the open bubble, a final one closes it. */
  heardVisitor({ partial, text }) {
    let el = this.question;
    if (!el || !el.classList.contains("partial")) {
      el = this.bubble("you");
      this.question = el;
      // A new question: what was shown for the last answer no longer applies.
      this.ui.fallback.hidden = true;
      this.ui.sources.hidden = true;
    }
    el.classList.toggle("partial", partial);
    el.querySelector(".text").textContent = text;
    el.scrollIntoView({ block: "end" });
  }

  /** A typed question: shown at once, final. */
  typed(text) {
    this.question = null;
    this.heardVisitor({ partial: false, text });
  }

  /** Drops a question bubble that never got words (push-to-talk released on silence, an error). */
  dropEmptyQuestion() {
    const el = this.question;
    if (el && el.classList.contains("partial") && !el.querySelector(".text").textContent) {
      el.remove();
      this.question = null;
    }
  }

  startReply(turn, route) {
    const el = this.bubble("assistant");
    el.classList.add("pending");
    const sources = this.pendingSources.turn === turn ? this.pendingSources.list : [];
    const reply = { turn, bubble: el, sentences: new Map(), heard: [], text: "", heardText: "", route, ended: false, over: false, interrupted: false, audio: false, sources, marked: false };
    this.replies.set(turn, reply);
    this.latest = turn;
    this.ui.sources.hidden = true; // until the reply's words show (a decline withdraws them first)
    for (const key of this.replies.keys()) if (key < turn - KEEP_REPLIES || key > turn) this.replies.delete(key);
    this.ui.fallback.hidden = route !== "fallback";
    if (this.question) this.question.classList.remove("partial");
    this.question = null;
    return reply;
  }

  /** The player started playing sentence ``index`` of ``turn``. */
  sentenceHeard(turn, index) {
    const reply = this.replies.get(turn);
    if (!reply) return;
    if (!reply.heard.includes(index)) reply.heard.push(index);
    this.render(reply);
  }

  render(reply) {
    const player = this.player;
    const textEl = reply.bubble.querySelector(".text");
    textEl.replaceChildren();
    const playingThis = player.playing && player.current && player.current.turn === reply.turn;
    if (!reply.audio) {
      // No voice came for this reply (a daemon without speech): once the turn is over, show the
      // words as written. Until then audio may still come, and captions wait for the voice.
      if (reply.over) textEl.textContent = reply.text;
    } else if (!reply.heard.length) {
      // Cut before a word was heard: the daemon's account of what was heard, if any.
      if (reply.interrupted) textEl.textContent = reply.heardText;
    } else {
      // The sentences heard so far; the one being spoken stands out.
      const nowIndex = playingThis ? player.current.sentence : -1;
      let before = "";
      for (const index of reply.heard) {
        const text = reply.sentences.get(index);
        if (!text) continue;
        const span = document.createElement("span");
        if (playingThis) span.className = index === nowIndex ? "now" : "spoken";
        span.textContent = separator(before, text) + text;
        before = text;
        textEl.append(span);
      }
    }
    this.renderNotHelpful(reply, playingThis);
    if (reply.turn === this.latest) this.showSources(reply);
    reply.bubble.classList.toggle("pending", !textEl.textContent && !reply.over && !reply.interrupted);
    reply.bubble.classList.toggle("interrupted", reply.interrupted);
    reply.bubble.scrollIntoView({ block: "end" });
  }

  renderAll() {
    for (const reply of this.replies.values()) this.render(reply);
  }

  /**
   * A reply that was answered (not the fallback line, not a decline, not cut short) gets a small
   * "not helpful" control once it has been heard; pressed, it says thanks and cannot be pressed again.
   */
  renderNotHelpful(reply, playing) {
    const { t } = this.i18n();
    let control = reply.bubble.querySelector(".feedback");
    const answered = reply.route !== "fallback" && !reply.declined && !reply.interrupted;
    const done = reply.over && !playing && reply.bubble.querySelector(".text").textContent;
    if (!answered || !done) {
      if (control && !reply.marked) control.remove();
      return;
    }
    if (control) return;
    control = document.createElement("button");
    control.type = "button";
    control.className = "feedback";
    control.dataset.i18n = "notHelpful";
    control.textContent = t("notHelpful");
    control.addEventListener("click", () => {
      if (reply.marked || !this.onNotHelpful(reply.turn)) return;
      reply.marked = true;
      control.disabled = true;
      control.dataset.i18n = "notHelpfulThanks";
      control.textContent = t("notHelpfulThanks");
    });
    reply.bubble.append(control);
  }

  /** A turn's sources (again, empty, when its reply turned out to decline: it used none). */
  sources(turn, list) {
    const reply = this.replies.get(turn);
    if (!reply) {
      this.pendingSources = { turn, list };
      return;
    }
    reply.sources = list;
    reply.declined = reply.declined || (list.length === 0 && reply.route === "generated");
    this.render(reply);
  }

  /** The panel shows the latest reply's sources once its words are on screen, never with none. */
  showSources(reply) {
    const words = reply.bubble.querySelector(".text").textContent;
    if (!reply.sources.length || !words) {
      this.ui.sources.hidden = true;
      return;
    }
    if (this.ui.sources.hidden || this.ui.sourceList.dataset.turn !== String(reply.turn)) this.fillSources(reply.sources);
    this.ui.sourceList.dataset.turn = String(reply.turn);
    this.ui.sources.hidden = false;
  }

  fillSources(list) {
    const { t } = this.i18n();
    const ul = this.ui.sourceList;
    ul.replaceChildren();
    for (const s of list.slice(0, 4)) {
      const li = document.createElement("li");
      const kind = document.createElement("span");
      kind.className = `kind ${s.kind === "faq" ? "faq" : "doc"}`;
      kind.textContent = t(s.kind === "faq" ? "faq" : "document");
      const title = document.createElement("span");
      title.className = "title";
      const file = (s.source || "").split("/").pop();
      // An FAQ entry without a title is named by its id; a document by its file.
      title.textContent = s.title || (s.kind === "faq" ? s.id : file) || file;
      const where = document.createElement("span");
      where.className = "where";
      const parts = [];
      if (s.section) parts.push(s.section);
      if (s.page) parts.push(t("page", { p: s.page }));
      if (file && file !== title.textContent) parts.push(file);
      where.textContent = parts.join(" · ");
      li.append(kind, title, where);
      ul.append(li);
    }
  }
}
