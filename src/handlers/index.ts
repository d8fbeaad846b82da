import type { Context } from "koa";
import { RuleError } from "../errors.js";
import type { Entry, Store } from "../store.js";
import type { Labels } from "../model.js";
import { selectedEntries } from "./group-filter.js";
import { GroupListJson } from "./group-list-json.js";

/** One line of the index: what is registered for an application/environment, without the target list. */
export interface IndexLine {
  readonly application: string;
  readonly environment: string;
  readonly file: string;
  readonly targets: number;
  readonly labels: Labels;
  /** When the file last changed: our own write, or the file's mtime when loaded or changed from outside. */
  readonly changedAt: string;
  /** The deadline of each expiring target (docs/api.md); absent when every target is permanent. */
  readonly expires?: Readonly<Record<string, string>>;
}

/** `GET /`: `{"groups": [IndexLine…]}`, sorted by application then environment, optionally filtered. */
export function index(store: Store) {
  const json = new GroupListJson(render, { before: '{"groups":', after: "}" });
  return (ctx: Context): void => {
    // The page's filter, sent to the JSON index, would be ignored: a list of everything that looks filtered.
    if (ctx.query.q !== undefined) {
      throw new RuleError(
        400,
        "?q= is the page's filter (for a browser, Accept: text/html); the JSON index filters with ?application= and ?environment=",
        {},
        "bad_request",
      );
    }
    const entries = selectedEntries(ctx, store.list());
    ctx.type = "json";
    ctx.body = json.bytesOf(entries);
  };
}

function render(entry: Entry): IndexLine {
  const expires = entry.expires.size === 0 ? undefined : Object.fromEntries([...entry.expires].map(([target, ms]) => [target, new Date(ms).toISOString()]));
  return {
    application: entry.id.application,
    environment: entry.id.environment,
    file: entry.fileName,
    targets: entry.group.targets.length,
    labels: entry.group.labels,
    changedAt: entry.changedAt.toISOString(),
    ...(expires === undefined ? {} : { expires }),
  };
}
