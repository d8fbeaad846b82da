import { readFile } from "node:fs/promises";

/** Anything in the services' output that is not a pino line below error level, for a note under the tables. */
export async function troubleIn(logFiles: readonly string[]): Promise<string | undefined> {
  let foreign = 0;
  let errors = 0;
  let example: string | undefined;
  for (const file of logFiles) {
    for (const line of (await readFile(file, "utf8").catch(() => "")).split("\n")) {
      if (line.trim() === "") continue;
      let level: unknown;
      try {
        level = (JSON.parse(line) as { level?: unknown }).level;
      } catch {
        foreign++;
        example ??= line.trim();
        continue;
      }
      if (typeof level === "number" && level >= 50) {
        errors++;
        example ??= line;
      }
    }
  }
  if (foreign === 0 && errors === 0) return undefined;
  return (
    `Service output: ${errors} log lines at level error or above, ${foreign} lines that are not JSON ` +
    `(first: \`${(example ?? "").slice(0, 160)}\`).`
  );
}
