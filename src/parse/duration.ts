/**
 * Prometheus' duration syntax (`90s`, `5m`, `1h30m`, `7d`, `250ms`): units from
 * the largest down, each at most once, as in Prometheus' model.ParseDuration.
 * Returns milliseconds (Infinity for one too long to count), or undefined when `text` is not such a duration.
 */
const DURATION = /^(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$/;
const UNIT_MS = [365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1] as const;

export function parseDuration(text: string): number | undefined {
  if (text === "0") return 0;
  const match = DURATION.exec(text);
  if (match === null || text === "") return undefined;
  let ms = 0;
  for (let i = 0; i < UNIT_MS.length; i++) {
    const count = match[i + 1];
    if (count !== undefined) ms += Number(count) * UNIT_MS[i]!;
  }
  return Number.isSafeInteger(ms) ? ms : Infinity;
}

/** The shortest Prometheus duration for `ms`, e.g. 5400000 → `1h30m`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const units = ["y", "w", "d", "h", "m", "s", "ms"] as const;
  let rest = ms;
  let text = "";
  for (let i = 0; i < UNIT_MS.length; i++) {
    const count = Math.floor(rest / UNIT_MS[i]!);
    if (count > 0) {
      text += `${count}${units[i]}`;
      rest -= count * UNIT_MS[i]!;
    }
  }
  return text;
}
