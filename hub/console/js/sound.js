// The alert for a new critical incident, made with Web Audio (no sound file to fetch).

let context = null;

export function soundReady() {
  return context !== null && context.state === "running";
}

/** Browsers let a page make sound only after the user did something: call this from a click. */
export function enableSound() {
  context ??= new AudioContext();
  return context.resume().catch(() => {});
}

/** Three falling two-tone beeps, about a second in all. */
export function alarm() {
  if (!context) {
    try {
      context = new AudioContext();
    } catch {
      return false;
    }
  }
  if (context.state !== "running") context.resume().catch(() => {});
  const start = context.currentTime + 0.02;
  for (let i = 0; i < 3; i++) {
    for (const [offset, hz] of [[0, 1046], [0.14, 784]]) {
      const at = start + i * 0.34 + offset;
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.type = "square";
      oscillator.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.13);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(at);
      oscillator.stop(at + 0.14);
    }
  }
  return true;
}
