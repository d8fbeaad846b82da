import { RuleError } from "../errors.js";
import { parseDuration } from "./duration.js";

export const MIN_TTL_MS = 1000;
export const MAX_TTL_MS = 365 * 86_400_000;

/**
 * `?ttl=` of PUT and POST (docs/api.md): a Prometheus duration from 1s to 365d,
 * in milliseconds; undefined when absent.
 */
export function parseTtl(given: string | string[] | undefined): number | undefined {
  if (given === undefined) return undefined;
  if (Array.isArray(given)) {
    throw new RuleError(400, `?ttl= is given ${given.length} times (${given.map((value) => JSON.stringify(value)).join(", ")}); give it once`);
  }
  const ms = parseDuration(given);
  if (ms === undefined || ms < MIN_TTL_MS || ms > MAX_TTL_MS) {
    throw new RuleError(
      400,
      `?ttl=${JSON.stringify(given)} is not ${ms === undefined ? "a duration" : "between 1s and 365d"}: use Prometheus' duration syntax ` +
        "from 1s to 365d, e.g. ttl=90s, ttl=5m, ttl=1h30m or ttl=7d",
    );
  }
  return ms;
}
