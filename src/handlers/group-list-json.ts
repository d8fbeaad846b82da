import type { Entry } from "../filestore/store.js";

/**
 * A JSON list of registered groups, sorted by application then environment,
 * built so that 10,000 groups cost little. It relies on one property of the
 * store: an Entry is never changed in place; every change swaps in a new object.
 * So each group's JSON is computed once (a WeakMap keyed by the Entry can never
 * be stale, and forgets the entries the store dropped), and when a request
 * selects the very same entries as the one before, the whole answer is reused.
 */
export class GroupListJson {
  private readonly fragments = new WeakMap<Entry, string>();
  private last: { readonly entries: readonly Entry[]; readonly text: string } | undefined;

  constructor(private readonly render: (entry: Entry) => unknown) {}

  /** `entries` in the store's order; the answer is sorted. */
  of(entries: readonly Entry[]): string {
    if (this.last !== undefined && sameEntries(this.last.entries, entries)) return this.last.text;
    const sorted = [...entries].sort(byApplicationThenEnvironment);
    const text = `[${sorted.map((entry) => this.fragment(entry)).join(",")}]`;
    this.last = { entries, text };
    return text;
  }

  private fragment(entry: Entry): string {
    let fragment = this.fragments.get(entry);
    if (fragment === undefined) {
      fragment = JSON.stringify(this.render(entry));
      this.fragments.set(entry, fragment);
    }
    return fragment;
  }
}

function sameEntries(a: readonly Entry[], b: readonly Entry[]): boolean {
  return a.length === b.length && a.every((entry, i) => entry === b[i]);
}

/** Code-unit order, not the locale's: the same on every machine. */
function byApplicationThenEnvironment(a: Entry, b: Entry): number {
  return compare(a.appEnv.application, b.appEnv.application) || compare(a.appEnv.environment, b.appEnv.environment);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
