/** Linear scales, "nice" ticks and number formatting shared by every chart. */

export interface LinearScale {
  (value: number): number;
  invert(pixel: number): number;
  readonly domain: readonly [number, number];
  readonly range: readonly [number, number];
}

/**
 * Map `domain` linearly onto `range`. A zero-width domain (a single step, a flat series) maps to
 * the middle of the range instead of dividing by zero.
 */
export function linearScale(
  domain: readonly [number, number],
  range: readonly [number, number],
): LinearScale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0;
  const scale = ((value: number) =>
    span === 0 ? (r0 + r1) / 2 : r0 + ((value - d0) / span) * (r1 - r0)) as LinearScale;
  scale.invert = (pixel: number) =>
    r1 === r0 ? d0 : d0 + ((pixel - r0) / (r1 - r0)) * (span === 0 ? 0 : span);
  Object.defineProperty(scale, "domain", { value: [d0, d1] as const });
  Object.defineProperty(scale, "range", { value: [r0, r1] as const });
  return scale;
}

/** The tick spacing of 1, 2 or 5 times a power of ten that gives about `count` ticks. */
export function tickStep(lo: number, hi: number, count: number): number {
  const raw = Math.abs(hi - lo) / Math.max(count, 1);
  if (!(raw > 0) || !Number.isFinite(raw)) return 0;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  // Pick the 1-2-5 value nearest on a log scale (thresholds at the geometric midpoints).
  const nice =
    fraction >= Math.sqrt(50)
      ? 10
      : fraction >= Math.sqrt(10)
        ? 5
        : fraction >= Math.sqrt(2)
          ? 2
          : 1;
  // Round away the binary noise of 10 ** -k (0.1 * 3 is 0.30000000000000004).
  return Number((nice * power).toPrecision(12));
}

/** Tick values: multiples of a 1-2-5 step inside [lo, hi]; a single tick for an empty span. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  const step = tickStep(lo, hi, count);
  if (step === 0) return Number.isFinite(lo) ? [lo] : [];
  const first = Math.ceil(Math.min(lo, hi) / step);
  const last = Math.floor(Math.max(lo, hi) / step);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/** Round an extent outwards to whole tick steps so the axis starts and ends on a label. */
export function niceExtent(lo: number, hi: number, count: number): [number, number] {
  const step = tickStep(lo, hi, count);
  if (step === 0) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    return [lo - pad, hi + pad];
  }
  return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
}

/** A tick label: as many decimals as the tick step needs, exponent form for tiny or huge values. */
export function formatTick(value: number, step: number): string {
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude < 1e-3 || magnitude >= 1e6) return trimExponent(value.toExponential(1));
  const decimals = step > 0 ? Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) : 2;
  return value.toFixed(Math.min(decimals, 6));
}

/** An optimizer step count: plain below 10,000, then with a k or M suffix. */
export function formatStep(step: number): string {
  const magnitude = Math.abs(step);
  if (magnitude < 1e4) return String(Math.round(step));
  if (magnitude < 1e6) return `${trimZeros((step / 1e3).toFixed(1))}k`;
  return `${trimZeros((step / 1e6).toFixed(2))}M`;
}

/** A value in a hover read-out: four significant digits. */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude < 1e-3 || magnitude >= 1e6) return trimExponent(value.toExponential(3));
  if (magnitude >= 1e4) return String(Math.round(value));
  return trimZeros(value.toPrecision(4));
}

function trimZeros(text: string): string {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

function trimExponent(text: string): string {
  const [mantissa = text, exponent = ""] = text.split("e");
  return `${trimZeros(mantissa)}e${exponent.replace("+", "")}`;
}
