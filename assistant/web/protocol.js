// The wire format of docs/protocol.md, in one place: the binary audio frame layout (both ways)
// and the messages this page sends. Everything else in the page goes through these functions,
// so a change of the contract is a change here.

export const PROTOCOL_VERSION = 2; // what this page speaks; hello.protocol names the daemon's
export const AUDIO_MAGIC = "ASA1";
export const AUDIO_HEADER_BYTES = 24;
export const MIC_RATE_HZ = 16000;
export const ENVELOPE_FRAME_MS = 20;

// Binary audio frame, little-endian (assistant/events.py):
//   0 magic "ASA1" | 4 u32 turn | 8 u32 sequence | 12 u32 sample_rate_hz | 16 u16 channels
//   18 u16 envelope_count N | 20 u16 envelope_frame_ms | 22 u16 sentence | 24 N bytes envelope | int16 PCM
export function decodeAudioFrame(buffer) {
  if (buffer.byteLength < AUDIO_HEADER_BYTES) throw new Error(`audio frame too short: ${buffer.byteLength} bytes`);
  const view = new DataView(buffer);
  const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
  if (magic !== AUDIO_MAGIC) throw new Error(`audio frame has magic ${JSON.stringify(magic)}`);
  const turn = view.getUint32(4, true);
  const sequence = view.getUint32(8, true);
  const sampleRateHz = view.getUint32(12, true);
  const channels = view.getUint16(16, true);
  const envelopeCount = view.getUint16(18, true);
  const envelopeFrameMs = view.getUint16(20, true) || ENVELOPE_FRAME_MS;
  const sentence = view.getUint16(22, true);
  if (channels !== 1) throw new Error(`audio frame has ${channels} channels`);
  const pcmOffset = AUDIO_HEADER_BYTES + envelopeCount;
  const pcmBytes = buffer.byteLength - pcmOffset;
  if (pcmBytes < 0 || pcmBytes % 2) throw new Error("audio frame PCM is not whole int16 samples");
  // Copy the PCM out: an Int16Array view needs 2-byte alignment, which an odd envelope breaks.
  const pcm = new Int16Array(pcmBytes / 2);
  new Uint8Array(pcm.buffer).set(new Uint8Array(buffer, pcmOffset, pcmBytes));
  const envelope = new Uint8Array(buffer.slice(AUDIO_HEADER_BYTES, pcmOffset));
  return { turn, sequence, sampleRateHz, sentence, envelope, envelopeFrameMs, pcm };
}

export function encodeAudioFrame(pcm, { turn = 0, sequence = 0, sampleRateHz = MIC_RATE_HZ, sentence = 0 } = {}) {
  const buffer = new ArrayBuffer(AUDIO_HEADER_BYTES + pcm.byteLength);
  const view = new DataView(buffer);
  for (let i = 0; i < 4; i++) view.setUint8(i, AUDIO_MAGIC.charCodeAt(i));
  view.setUint32(4, turn, true);
  view.setUint32(8, sequence >>> 0, true);
  view.setUint32(12, sampleRateHz, true);
  view.setUint16(16, 1, true);
  view.setUint16(18, 0, true); // microphone frames carry no envelope
  view.setUint16(20, ENVELOPE_FRAME_MS, true);
  view.setUint16(22, sentence, true);
  // PCM is int16 little-endian; every browser this page runs on is little-endian.
  new Uint8Array(buffer, AUDIO_HEADER_BYTES).set(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength));
  return buffer;
}

// --- client -> server messages (docs/protocol.md) ----------------------------------------------

/** A typed question. */
export function textMessage(text) {
  return { type: "text", text };
}

/** Stop the reply now; played_ms tells the daemon how much of the turn was heard. */
export function interruptMessage(turn, playedMs) {
  const msg = { type: "interrupt" };
  if (turn) msg.turn = turn;
  if (playedMs !== undefined && playedMs !== null) msg.played_ms = Math.max(0, Math.round(playedMs));
  return msg;
}

/** How far this page has played a turn's reply audio, all sentences together. */
export function playbackMessage({ turn, playedMs }) {
  return { type: "playback", turn, played_ms: Math.max(0, Math.round(playedMs)) };
}

/** "hands-free" (the daemon's voice activity detection delimits speech) or "push-to-talk". */
export function modeMessage(mode) {
  return { type: "mode", mode };
}

export function talkStartMessage() {
  return { type: "talk-start" };
}

export function talkEndMessage() {
  return { type: "talk-end" };
}

/** The visitor found a finished reply unhelpful: the daemon queues the turn for the owner. */
export function notHelpfulMessage(turn) {
  return { type: "not-helpful", turn };
}
