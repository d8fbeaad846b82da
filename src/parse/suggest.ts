/**
 * The candidate a typo most likely meant: within two edits (a third for long
 * words), or one the given text starts (`app` → `application`).
 */
export function closest(given: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(given.toLowerCase(), candidate.toLowerCase());
    if (best === undefined || distance < best.distance) best = { candidate, distance };
  }
  if (best === undefined || best.distance === 0) return undefined;
  if (best.distance <= (best.candidate.length > 8 ? 3 : 2)) return best.candidate;
  return given.length >= 3 ? candidates.find((candidate) => candidate.startsWith(given)) : undefined;
}

/** Levenshtein distance, with the two rows it needs. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous.at(j - 1)! + (a.charAt(i - 1) === b.charAt(j - 1) ? 0 : 1);
      current.push(Math.min(previous.at(j)! + 1, current.at(j - 1)! + 1, substitution));
    }
    previous = current;
  }
  return previous.at(b.length)!;
}
