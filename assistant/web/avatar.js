// The character: idle breathing, blinking and glances; a look per state (listening, thinking,
// speaking, asleep while disconnected); the mouth follows the envelope of the audio being heard.
//
// One requestAnimationFrame loop moves everything from a few numbers (time, look, mouth openness),
// so nothing accumulates over hours: no timers per blink, no nodes created after start-up.

const TAU = Math.PI * 2;

function lerp(a, b, f) {
  return a + (b - a) * f;
}

export class Avatar {
  /**
   * @param {SVGSVGElement} svg
   * @param {() => number} mouthSource  mouth openness 0..1 for the audio heard right now
   */
  constructor(svg, mouthSource) {
    this.svg = svg;
    this.mouthSource = mouthSource;
    this.look = "idle";
    this.level = 0; // microphone level 0..1 while listening
    const $ = (id) => svg.querySelector(`#${id}`);
    this.el = {
      head: $("head"),
      body: $("body"),
      eyes: [$("eye-left"), $("eye-right")],
      eyeBase: [
        [160, 214],
        [240, 214],
      ],
      browL: $("brow-left"),
      browR: $("brow-right"),
      mouth: $("mouth-shape"),
      mouthClip: $("mouth-clip-path"),
      teeth: $("teeth"),
      tongue: $("tongue"),
    };
    // Smoothed values (each eases toward its target every frame).
    this.s = { open: 0, gazeX: 0, gazeY: 0, tilt: 0, brow: 0, eyeScale: 1, smile: 7, width: 22, level: 0 };
    this.nextBlink = performance.now() + 1500;
    this.blinkStart = -1;
    this.doubleBlink = false;
    this.gazeTarget = [0, 0];
    this.nextGaze = performance.now() + 2000;
    this.last = performance.now();
    this.nodStart = -1e9;
    this.frame = this.frame.bind(this);
    this.raf = requestAnimationFrame(this.frame);
  }

  setLook(look) {
    this.look = look;
  }

  setLevel(level) {
    this.level = level;
  }

  /** A small nod, as people do at the start of a sentence or when they have understood. */
  nod() {
    this.nodStart = performance.now();
  }

  frame(now) {
    this.raf = requestAnimationFrame(this.frame);
    const dt = Math.min(0.1, Math.max(0.001, (now - this.last) / 1000));
    this.last = now;
    const t = now / 1000;
    const look = this.look;
    const s = this.s;
    const ease = (key, target, rate) => {
      s[key] = lerp(s[key], target, 1 - Math.exp(-rate * dt));
    };

    // --- targets per look ---
    let gaze = [0, 0];
    let tilt = 0;
    let brow = 0;
    let eyeScale = 1;
    let smile = 7;
    let width = 22;
    let open = 0;
    if (look === "idle") {
      if (now > this.nextGaze) {
        // An occasional glance, mostly back to the visitor.
        this.gazeTarget = Math.random() < 0.55 ? [0, 0] : [(Math.random() - 0.5) * 10, (Math.random() - 0.5) * 5];
        this.nextGaze = now + 1500 + Math.random() * 3000;
      }
      gaze = this.gazeTarget;
      tilt = Math.sin(t * 0.5) * 1.5;
    } else if (look === "listening") {
      gaze = [0, -1];
      tilt = 5;
      brow = 5;
      eyeScale = 1.08;
      smile = 5;
      width = 18;
      open = 0.06 + Math.min(0.1, this.level * 0.6);
    } else if (look === "thinking") {
      gaze = [7, -8];
      tilt = -4 + Math.sin(t * 1.3) * 1.5;
      brow = 3;
      smile = 1;
      width = 13;
    } else if (look === "speaking") {
      gaze = [Math.sin(t * 0.7) * 2, 0];
      tilt = Math.sin(t * 0.9) * 2;
      brow = 1.5;
      smile = 6;
      open = this.mouthSource();
    } else if (look === "asleep") {
      tilt = -6;
      smile = 3;
      width = 14;
    }

    // Fast attack, slower release: the mouth snaps open on a syllable and closes softly.
    ease("open", open, open > s.open ? 30 : 14);
    ease("gazeX", gaze[0], 8);
    ease("gazeY", gaze[1], 8);
    ease("tilt", tilt, 3);
    ease("brow", brow + (look === "speaking" ? s.open * 4 : 0), 8);
    ease("eyeScale", eyeScale, 6);
    ease("smile", smile, 5);
    ease("width", width, 6);
    // The frame's ring swells with the visitor's voice: a sign that the microphone hears them.
    ease("level", look === "listening" ? Math.min(1, this.level * 8) : 0, 12);
    this.svg.style.setProperty("--level", s.level.toFixed(3));

    // --- breathing: the body rises and the head follows, a little later ---
    const breath = Math.sin((t * TAU) / 4.2);
    const breathHead = Math.sin((t * TAU) / 4.2 - 0.5);
    const bob = look === "speaking" ? s.open * 3 : 0;
    // The nod: down and back up over 450 ms.
    const nodP = (now - this.nodStart) / 450;
    const nod = nodP >= 0 && nodP < 1 ? Math.sin(nodP * Math.PI) * 5 : 0;
    this.el.body.setAttribute("transform", `translate(0 ${(-breath * 1.6).toFixed(2)}) scale(1 ${(1 + breath * 0.006).toFixed(4)})`);
    this.el.head.setAttribute(
      "transform",
      `translate(0 ${(-breathHead * 2.6 + bob + nod).toFixed(2)}) rotate(${(s.tilt + nod * 0.4).toFixed(2)} 200 300)`,
    );

    // --- blinking: every 2.5-6 s, sometimes twice; not while asleep (eyes are closed) ---
    let lid = 1;
    if (this.blinkStart < 0 && now > this.nextBlink) {
      this.blinkStart = now;
      this.doubleBlink = Math.random() < 0.2;
    }
    if (this.blinkStart >= 0) {
      const length = this.doubleBlink ? 420 : 160;
      const p = (now - this.blinkStart) / length;
      if (p >= 1) {
        this.blinkStart = -1;
        this.nextBlink = now + 2500 + Math.random() * 3500;
      } else {
        const phase = this.doubleBlink ? (p * 2) % 1 : p;
        lid = Math.abs(Math.cos(phase * Math.PI)) * 0.92 + 0.08;
      }
    }
    this.el.eyes.forEach((eye, i) => {
      const [x, y] = this.el.eyeBase[i];
      const sy = lid * s.eyeScale;
      eye.setAttribute(
        "transform",
        `translate(${(x + s.gazeX).toFixed(2)} ${(y + s.gazeY).toFixed(2)}) scale(${s.eyeScale.toFixed(3)} ${sy.toFixed(3)})`,
      );
    });

    // --- brows ---
    const b = s.brow;
    const bL = look === "thinking" ? b * 1.8 : b;
    this.el.browL.setAttribute("d", `M140 ${176 - bL} Q160 ${166 - bL * 1.2} 180 ${174 - bL}`);
    this.el.browR.setAttribute("d", `M220 ${174 - b} Q240 ${166 - b * 1.2} 260 ${176 - b}`);

    this.drawMouth(s.open, s.width, s.smile);
  }

  drawMouth(open, width, smile) {
    const H = 34; // fully open, in viewBox units
    const w = width - open * 5;
    const corner = -smile * 0.25 - open * 1;
    const upper = smile * 0.55 - open * H * 0.3;
    const lower = smile + open * H;
    const d =
      `M${(-w).toFixed(2)} ${corner.toFixed(2)} ` +
      `C${(-w * 0.5).toFixed(2)} ${upper.toFixed(2)} ${(w * 0.5).toFixed(2)} ${upper.toFixed(2)} ${w.toFixed(2)} ${corner.toFixed(2)} ` +
      `C${(w * 0.6).toFixed(2)} ${lower.toFixed(2)} ${(-w * 0.6).toFixed(2)} ${lower.toFixed(2)} ${(-w).toFixed(2)} ${corner.toFixed(2)} Z`;
    this.el.mouth.setAttribute("d", d);
    this.el.mouthClip.setAttribute("d", d);
    this.el.mouth.dataset.open = open.toFixed(3);
    // Teeth along the upper lip and the tongue at the bottom show only once the mouth is open.
    const upperMid = corner + (upper - corner) * 0.75;
    const lowerMid = corner + (lower - corner) * 0.75;
    this.el.teeth.setAttribute("y", (upperMid - 2).toFixed(2));
    this.el.teeth.setAttribute("opacity", open > 0.12 ? "1" : "0");
    this.el.tongue.setAttribute("cy", (lowerMid - 2).toFixed(2));
    this.el.tongue.setAttribute("rx", (w * 0.55).toFixed(2));
    this.el.tongue.setAttribute("ry", Math.max(0, (lowerMid - upperMid) * 0.35).toFixed(2));
    this.el.tongue.setAttribute("opacity", open > 0.2 ? "1" : "0");
  }
}
