// AudioWorklet processor: microphone at the context's rate -> 16 kHz mono int16 frames.
//
// Runs on the audio rendering thread, so it does the least it can: a box low-pass matched to the
// decimation ratio (enough for speech going to Whisper, which low-passes again), linear
// interpolation to the target rate, and fixed-size frames posted to the main thread as
// transferable ArrayBuffers (no copies, no garbage per sample). It also posts a level (RMS, 0..1)
// a few times a second so the page can show that it hears something.

class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.frameSamples = opts.frameSamples || 320; // 20 ms at 16 kHz
    this.step = sampleRate / this.targetRate; // input samples per output sample (e.g. 3 at 48 kHz)
    this.boxLength = Math.max(1, Math.round(this.step));
    this.box = new Float32Array(this.boxLength);
    this.boxIndex = 0;
    this.boxSum = 0;
    this.pos = 0; // fractional read position of the next output sample, in input samples
    this.prev = 0; // the previous low-passed input sample (for interpolation across blocks)
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.levelSum = 0;
    this.levelCount = 0;
    this.levelEvery = Math.round(this.targetRate / 10); // ~10 level reports a second
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channel = input[0];
    for (let i = 0; i < channel.length; i++) {
      // Running box filter: average of the last boxLength samples.
      this.boxSum += channel[i] - this.box[this.boxIndex];
      this.box[this.boxIndex] = channel[i];
      this.boxIndex = (this.boxIndex + 1) % this.boxLength;
      const cur = this.boxSum / this.boxLength;
      // Emit every output sample whose position falls between the previous input sample and this one.
      while (this.pos <= 1) {
        const v = this.prev + (cur - this.prev) * this.pos;
        this.push(v);
        this.pos += this.step;
      }
      this.pos -= 1;
      this.prev = cur;
    }
    return true;
  }

  push(v) {
    const clamped = v > 1 ? 1 : v < -1 ? -1 : v;
    this.frame[this.fill++] = clamped < 0 ? clamped * 32768 : clamped * 32767;
    this.levelSum += clamped * clamped;
    this.levelCount++;
    if (this.levelCount >= this.levelEvery) {
      this.port.postMessage({ level: Math.sqrt(this.levelSum / this.levelCount) });
      this.levelSum = 0;
      this.levelCount = 0;
    }
    if (this.fill === this.frameSamples) {
      const out = this.frame;
      this.port.postMessage({ pcm: out.buffer }, [out.buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.fill = 0;
    }
  }
}

registerProcessor("mic-capture", MicCapture);
