import type { Context } from "koa";
import { RuleError } from "../errors.js";
import type { Entry, Store } from "../store.js";
import type { Labels } from "../model.js";
import { selectedEntries } from "./group-filter.js";
import { GroupListJson } from "./group-list-json.js";

/** One line of the index: what is registered for an application/environment (or its probes), without the target list. */
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

/**
 * `GET /`: `{"groups": [IndexLine…], "probes": [IndexLine…]}`, each sorted by application then
 * environment, optionally filtered. `groups` are the scrape groups, as before probes existed;
 * `probes` the probe groups, whose `file` is in probes/.
 */
export function index(store: Store) {
  const groups = new GroupListJson(render, { before: '{"groups":', after: "" });
  const probes = new GroupListJson(render, { before: ',"probes":', after: "}" });
  let last: { readonly parts: readonly [Buffer, Buffer]; readonly bytes: Buffer } | undefined;
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
    const parts = [groups.bytesOf(selectedEntries(ctx, store.list(), "targets")), probes.bytesOf(selectedEntries(ctx, store.list(), "probes"))] as const;
    // Each part is reused while its groups stay the same; so is the answer made of them.
    if (last === undefined || last.parts[0] !== parts[0] || last.parts[1] !== parts[1]) last = { parts, bytes: Buffer.concat(parts) };
    ctx.type = "json";
    ctx.body = last.bytes;
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
