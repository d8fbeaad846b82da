/**
 * Prometheus' duration syntax (`30s`, `2m`, `1m30s`, `1h`, `500ms`): units from
 * largest to smallest, each at most once; a bare `0` is zero. Undefined when
 * `text` is not one.
 */
const UNITS_MS = { y: 365 * 86_400_000, w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as const;
const DURATION = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;

export function parseDuration(text: string): number | undefined {
  if (text === "0") return 0;
  const match = DURATION.exec(text);
  if (text === "" || match === null) return undefined;
  const factors = Object.values(UNITS_MS);
  let ms = 0;
  for (let i = 0; i < factors.length; i++) {
    const amount = match[i + 1];
    if (amount !== undefined) ms += Number(amount) * (factors[i] ?? 0);
  }
  return Number.isSafeInteger(ms) ? ms : undefined;
}
