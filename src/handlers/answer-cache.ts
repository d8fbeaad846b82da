import type { Entry } from "../filestore/store.js";

/**
 * The last JSON answer built from every registered group, reused while the
 * store holds the very same entries. The store never changes an Entry in place:
 * every change swaps in a new object, so the same objects in the same order
 * mean the same answer. Checking that is one pass of pointer comparisons;
 * rebuilding means sorting and serialising every group (tens of ms at 10,000).
 */
export class AnswerCache {
  private entries: readonly Entry[] = [];
  private text: string | undefined;

  answer(current: Iterable<Entry>, render: (entries: readonly Entry[]) => unknown): string {
    const entries = [...current];
    const same = this.text !== undefined && entries.length === this.entries.length && entries.every((entry, i) => entry === this.entries[i]);
    if (!same) {
      this.text = JSON.stringify(render(entries));
      this.entries = entries;
    }
    return this.text as string;
  }
}
