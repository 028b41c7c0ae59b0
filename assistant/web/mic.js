// The browser microphone: getUserMedia (echo cancellation on, so the assistant's own voice from the
// speakers is not heard as a question) -> AudioWorklet (mic-worklet.js) -> 16 kHz int16 frames.
//
// The stream opens once and stays open (asking again for every question would add latency and, on
// some browsers, a permission prompt); whether frames are *sent* is the page's decision: always in
// hands-free mode, only while the talk button is held in push-to-talk mode.

export class Microphone {
  /**
   * @param {AudioContext} ctx
   * @param {() => number} rate  the rate the daemon wants (Hz), read when the microphone opens
   * @param {{onFrame: (pcm: Int16Array) => void, onLevel?: (level: number) => void, onEnded?: () => void}} hooks
   */
  constructor(ctx, rate, hooks) {
    this.ctx = ctx;
    this.rate = rate;
    this.rateHz = 16000;
    this.hooks = hooks;
    this.stream = null;
    this.source = null;
    this.node = null;
    this.sink = null;
    this.opening = null;
  }

  get ready() {
    return this.node !== null;
  }

  /** Opens the microphone; resolves when frames flow. Rejects when there is no microphone or no permission. */
  open() {
    if (this.opening) return this.opening;
    this.opening = this._open().catch((err) => {
      this.opening = null;
      this.close();
      throw err;
    });
    return this.opening;
  }

  async _open() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("no microphone API (the page needs https or localhost)");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      video: false,
    });
    await this.ctx.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
    this.rateHz = this.rate();
    this.source = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "mic-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
      // 20 ms frames: small enough for quick endpointing, large enough to keep messages few.
      processorOptions: { targetRate: this.rateHz, frameSamples: Math.round(this.rateHz / 50) },
    });
    this.node.port.onmessage = (msg) => {
      const data = msg.data;
      if (data.pcm) this.hooks.onFrame(new Int16Array(data.pcm));
      else if (data.level !== undefined && this.hooks.onLevel) this.hooks.onLevel(data.level);
    };
    // The graph is pulled from the destination: route the worklet there through a silent gain so
    // it keeps running, without playing the microphone back into the room.
    this.sink = this.ctx.createGain();
    this.sink.gain.value = 0;
    this.source.connect(this.node);
    this.node.connect(this.sink);
    this.sink.connect(this.ctx.destination);
    // A microphone unplugged or revoked: let the page know, so it can fall back to the text box.
    for (const track of this.stream.getAudioTracks()) {
      track.addEventListener("ended", () => {
        this.close();
        if (this.hooks.onEnded) this.hooks.onEnded();
      });
    }
  }

  close() {
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.disconnect();
    }
    if (this.source) this.source.disconnect();
    if (this.sink) this.sink.disconnect();
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.node = this.source = this.sink = this.stream = null;
    this.opening = null;
  }
}
