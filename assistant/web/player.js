// Reply audio through the Web Audio API, and the clock everything visual follows.
//
// Each binary frame becomes one AudioBufferSourceNode scheduled to start exactly where the previous
// one ends (gapless across chunks and sentences). Every scheduled chunk keeps its start time on the
// audio clock and its mouth envelope, so the mouth and the captions follow what is *heard* (the
// output timestamp of the audio clock), not when the frames arrived. The player also counts what
// was heard, for the playback reports the daemon uses to keep only the heard part of a reply.

const START_LEAD_S = 0.08; // head start for the first chunk after silence, so the next can join gaplessly
const REPORT_EVERY_MS = 250;

export class Player {
  /**
   * @param {AudioContext} ctx
   * @param {{onSentence?: Function, onPosition?: Function, onIdle?: Function}} hooks
   *   onSentence(turn, sentence) when a sentence starts to be heard; onPosition({turn, sentence,
   *   playedMs, done}) while playing and whenever playback runs dry or is stopped (done: true);
   *   onIdle(turn) when nothing is left to play.
   */
  constructor(ctx, hooks = {}) {
    this.ctx = ctx;
    this.hooks = hooks;
    this.out = ctx.createGain();
    this.out.connect(ctx.destination);
    this.chunks = []; // scheduled, not yet pruned: {src, start, end, turn, sentence, env, frameS}
    this.nextTime = 0;
    this.turn = 0;
    this.cutTurn = 0; // frames of this turn and older are stale (interrupted): dropped on arrival
    this.heardMs = 0; // of this.turn: chunks that finished playing
    this.current = null; // {turn, sentence} being heard
    this.lastReport = 0;
    this.playing = false;
    this.schedule = []; // the last few scheduled chunks {turn, sentence, arrived, start, end}: for diagnostics and tests
    this.timer = setInterval(() => this.update(), 50);
  }

  /** The audio-clock time of the sample leaving the speaker now. */
  heardTime() {
    const ctx = this.ctx;
    if (typeof ctx.getOutputTimestamp === "function") {
      const ts = ctx.getOutputTimestamp();
      if (ts.contextTime > 0 && ts.performanceTime > 0) {
        return ts.contextTime + (performance.now() - ts.performanceTime) / 1000;
      }
    }
    return ctx.currentTime - (ctx.outputLatency || ctx.baseLatency || 0);
  }

  /** Schedules one decoded audio frame (protocol.js decodeAudioFrame). */
  play(frame) {
    if (frame.turn <= this.cutTurn || frame.pcm.length === 0) return;
    if (frame.turn !== this.turn) {
      // A new turn replaces whatever is still queued from an older one.
      if (this.chunks.length) this.stop();
      this.turn = frame.turn;
      this.heardMs = 0;
    }
    const buffer = this.ctx.createBuffer(1, frame.pcm.length, frame.sampleRateHz);
    const data = buffer.getChannelData(0);
    const pcm = frame.pcm;
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const now = this.ctx.currentTime;
    // Join the previous chunk whenever it has not ended yet (a start a hair in the past plays at
    // once); after a gap, take a small head start so the next chunk can join this one.
    const start = this.nextTime > now ? this.nextTime : now + START_LEAD_S;
    const src = this.ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(this.out);
    src.onended = () => src.disconnect(); // release the node as soon as it is done
    src.start(start);
    const end = start + buffer.duration;
    this.nextTime = end;
    this.chunks.push({ src, start, end, turn: frame.turn, sentence: frame.sentence, env: frame.envelope, frameS: frame.envelopeFrameMs / 1000 });
    this.schedule.push({ turn: frame.turn, sentence: frame.sentence, arrived: now, start, end });
    if (this.schedule.length > 64) this.schedule.shift();
    this.playing = true;
  }

  /** Stops everything now (interrupt); frames of the stopped turn that still arrive are dropped. */
  stop() {
    if (!this.chunks.length) {
      this.cutTurn = Math.max(this.cutTurn, this.turn);
      return;
    }
    const position = this.position();
    for (const c of this.chunks) {
      try {
        c.src.stop();
      } catch (err) {
        // never started or already stopped: nothing to release but the connection
      }
      c.src.disconnect();
    }
    this.chunks = [];
    this.nextTime = 0;
    this.cutTurn = Math.max(this.cutTurn, this.turn);
    this.finish(position);
  }

  /** A new session (after a reconnect): its turn numbers start again from 1. */
  reset() {
    this.stop();
    this.turn = 0;
    this.cutTurn = 0;
    this.heardMs = 0;
  }

  /** Mouth openness 0..1 at the heard time, interpolated between envelope values. */
  mouth() {
    if (!this.chunks.length) return 0;
    const t = this.heardTime();
    for (const c of this.chunks) {
      if (t < c.start || t >= c.end) continue;
      if (!c.env.length) return 0;
      const x = (t - c.start) / c.frameS;
      const i = Math.min(c.env.length - 1, Math.floor(x));
      const j = Math.min(c.env.length - 1, i + 1);
      const f = x - Math.floor(x);
      return (c.env[i] * (1 - f) + c.env[j] * f) / 255;
    }
    return 0;
  }

  /** What has been heard of the current turn: the sentence being heard and the milliseconds so far. */
  position() {
    const t = this.heardTime();
    let playedMs = this.heardMs;
    let sentence = this.current ? this.current.sentence : 0;
    for (const c of this.chunks) {
      if (c.turn !== this.turn || t < c.start) continue;
      playedMs += (Math.min(t, c.end) - c.start) * 1000;
      sentence = c.sentence;
    }
    return { turn: this.turn, sentence, playedMs };
  }

  // Playback ran dry (the reply is over, or the next sentence is not here yet) or was stopped.
  // heardMs stays: more audio of the same turn keeps counting from there.
  finish(position) {
    this.playing = false;
    this.current = null;
    if (this.hooks.onPosition) this.hooks.onPosition({ ...position, done: true });
    if (this.hooks.onIdle) this.hooks.onIdle(position.turn);
  }

  update() {
    if (!this.playing) return;
    const t = this.heardTime();
    // Which chunk is heard now: announce sentence changes (captions switch with the voice).
    for (const c of this.chunks) {
      if (t >= c.start && t < c.end) {
        if (!this.current || this.current.turn !== c.turn || this.current.sentence !== c.sentence) {
          this.current = { turn: c.turn, sentence: c.sentence };
          if (this.hooks.onSentence) this.hooks.onSentence(c.turn, c.sentence);
        }
        break;
      }
    }
    // Forget chunks that have been heard; keep their duration in the running total.
    while (this.chunks.length && this.chunks[0].end <= t) {
      const c = this.chunks.shift();
      if (c.turn === this.turn) this.heardMs += (c.end - c.start) * 1000;
    }
    const now = performance.now();
    if (!this.chunks.length) {
      this.finish({ turn: this.turn, sentence: this.current ? this.current.sentence : 0, playedMs: this.heardMs });
      return;
    }
    if (now - this.lastReport >= REPORT_EVERY_MS) {
      this.lastReport = now;
      if (this.hooks.onPosition) this.hooks.onPosition({ ...this.position(), done: false });
    }
  }
}
