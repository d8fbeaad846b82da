import yaml from "js-yaml";
import { RuleError } from "../errors.js";
import type { Change, Kind, Labels } from "../model.js";
import { closest } from "./suggest.js";
import { labelValueProblem, requestLabelNameProblem, targetProblemOf } from "./values.js";

export type BodyFormat = "json" | "yaml" | "form";

/** Keyed by the client's Content-Type: a Map (src/model.ts, keys from clients). */
const FORMATS: ReadonlyMap<string, BodyFormat> = new Map([
  ["application/json", "json"],
  ["text/vnd.yaml", "yaml"],
  ["text/yaml", "yaml"],
  ["text/x-yaml", "yaml"],
  ["application/vnd.yaml", "yaml"],
  ["application/x-yaml", "yaml"],
  ["application/yaml", "yaml"],
  ["application/x-www-form-urlencoded", "form"],
]);

export const SUPPORTED_MEDIA_TYPES: readonly string[] = [...FORMATS.keys()];

/** The body format named by a Content-Type header; parameters such as charset are ignored. */
export function formatOf(contentType: string | undefined): BodyFormat | undefined {
  const mediaType = contentType?.split(";", 1)[0]?.trim().toLowerCase() ?? "";
  return FORMATS.get(mediaType);
}

export function unsupportedMediaType(contentType: string | undefined): RuleError {
  return new RuleError(
    415,
    `Content-Type ${JSON.stringify(contentType ?? "")} is not supported: send application/json, ` +
      "application/yaml (or text/yaml) or application/x-www-form-urlencoded (what curl -d sends)",
  );
}

/**
 * Bytes (already decoded as UTF-8) plus their format → the targets and labels they carry,
 * checked against the grammar of the group's kind.
 */
export function parseBody(text: string, format: BodyFormat, kind: Kind = "targets"): Change {
  if (text.includes("\uFFFD")) {
    throw new RuleError(400, "the body is not valid UTF-8");
  }
  if (text.length === 0) return {};
  switch (format) {
    case "json":
      return checkValues(fromDocument(parseJson(text), format, text), kind);
    case "yaml":
      return checkValues(fromDocument(parseYaml(text), format, text), kind);
    case "form":
      return checkValues(parseForm(text, kind), kind);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RuleError(400, `the JSON body does not parse: ${(error as Error).message}`);
  }
}

function parseYaml(text: string): unknown {
  try {
    // CORE_SCHEMA: plain data only, no custom tags, and `2024-01-01` stays a string.
    return yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (error) {
    const reason = error instanceof yaml.YAMLException ? error.reason : (error as Error).message;
    throw new RuleError(400, `the YAML body does not parse (it must be one document): ${reason}`);
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fromDocument(document: unknown, format: "json" | "yaml", text: string): Change {
  if (document === undefined || document === null) return {};
  if (!isMapping(document)) {
    throw new RuleError(400, 'the body must be one mapping with the keys "targets" and/or "labels"');
  }
  const unknownKeys = Object.keys(document).filter((key) => key !== "targets" && key !== "labels");
  if (unknownKeys.length > 0) {
    throw new RuleError(
      400,
      `unknown key ${JSON.stringify(unknownKeys[0])}: only "targets" (a list of host:port) and "labels" are allowed`,
    );
  }
  const change: { targets?: string[]; labels?: Labels } = {};
  if ("targets" in document) change.targets = targetList(document.targets);
  if ("labels" in document) change.labels = labelMapping(document.labels, format, text);
  return change;
}

function targetList(value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw new RuleError(400, '"targets" must be a list of strings such as ["host1:9100", "host2:9100"]');
  }
  for (const [index, target] of value.entries()) {
    if (typeof target !== "string") {
      throw new RuleError(400, `"targets" item ${index} must be a string such as "host:9100", not ${describeValue(target)}`);
    }
  }
  return value as string[];
}

/**
 * A value where a string belongs, named without walking into it: a list or
 * mapping may be nested 100,000 deep, circular (YAML `&a [*a]`) or an alias
 * bomb that expands to billions of items, and serialising it would overflow
 * the stack, throw, or hang the process.
 */
function describeValue(value: unknown): string {
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object" && value !== null) return "a mapping";
  return JSON.stringify(value) ?? typeof value;
}

/**
 * The quoting fix for a label value the parser read as a number, a boolean or null. When the
 * body holds the value as String() shows it (port: 9100), the fix shows it quoted; when the
 * parser changed it (1.10 read as 1.1, 0x1F as 31), the fix cannot know what was written.
 */
function notAString(name: string, value: unknown, format: "json" | "yaml", text: string): string {
  const shown = String(value);
  const escape = (part: string): string => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const key = format === "yaml" ? `${name}:` : `"${name}":`;
  const asWritten = new RegExp(`${escape(key)}\\s*${escape(shown)}(?![0-9A-Za-z_.])`).test(text);
  if (asWritten) return `label ${JSON.stringify(name)} must be a string; quote it: ${key} "${shown}"`;
  const read = value === null ? "null" : `the ${typeof value} ${shown}`;
  return `label ${JSON.stringify(name)} must be a string, but unquoted it was read as ${read}; put the value in quotes exactly as you mean it: ${key} "…"`;
}

function labelMapping(value: unknown, format: "json" | "yaml", text: string): Labels {
  if (!isMapping(value)) {
    throw new RuleError(400, '"labels" must be a mapping of label names to string values');
  }
  for (const [name, labelValue] of Object.entries(value)) {
    if (typeof labelValue === "object" && labelValue !== null) {
      throw new RuleError(400, `label ${JSON.stringify(name)} must be a string, not ${describeValue(labelValue)}`);
    }
    if (typeof labelValue !== "string") throw new RuleError(400, notAString(name, labelValue, format, text));
  }
  return value as Labels;
}

/**
 * Form bodies: `targets` comma-separated or repeated; every other key is a label. A URL may
 * hold commas (`?ids=1,2`), so in a probe group's form a `targets` field that starts with a
 * scheme (`https://`) is one URL, commas and all; several URLs are several fields. Two URLs
 * in one field are refused rather than taken for one URL with a comma in it.
 */
function parseForm(body: string, kind: Kind): Change {
  // `--data-binary @file` sends the file's last newline too: it ends the body, not the last value.
  const text = body.replace(/\r?\n$/, "");
  const targets: string[] = [];
  let sawTargets = false;
  const labels = new Map<string, string>();
  for (const [key, value] of new URLSearchParams(text)) {
    if (key.includes("\uFFFD") || value.includes("\uFFFD")) {
      throw new RuleError(400, "the form body is not valid UTF-8 once percent-decoded");
    }
    if (key === "targets") {
      sawTargets = true;
      if (value.trim() === "") throw new RuleError(400, '"targets" is empty: give at least one host:port, e.g. targets=host1:9100,host2:9100');
      if (kind === "probes" && /^\s*[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value)) {
        if (/,\s*[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value)) {
          throw new RuleError(
            400,
            `"targets" holds more than one URL in ${JSON.stringify(value)}: in a form, a field that starts with a URL is one URL ` +
              "(commas included); give each URL its own field (-d targets=URL1 -d targets=URL2), or send JSON or YAML",
          );
        }
        targets.push(value.trim());
        continue;
      }
      for (const item of value.split(",").map((part) => part.trim())) {
        if (item === "") {
          throw new RuleError(400, `"targets" has an empty item in ${JSON.stringify(value)}: remove the extra comma`);
        }
        targets.push(item);
      }
    } else if (key === "labels" || key.toLowerCase() === "targets" || closest(key, ["targets"]) !== undefined) {
      // Every other key of a form is a label: a misspelt targets= would silently replace the labels.
      throw new RuleError(
        400,
        `${JSON.stringify(key)} looks like a misspelt "targets" (in a form every other key is a label, so it would have become one): ` +
          `write targets=host:9100; to register a label named ${JSON.stringify(key)}, send JSON or YAML`,
      );
    } else if (labels.has(key)) {
      throw new RuleError(400, `label ${JSON.stringify(key)} is given twice; give it once`);
    } else {
      labels.set(key, value);
    }
  }
  const change: { targets?: string[]; labels?: Labels } = {};
  if (sawTargets) change.targets = targets;
  // fromEntries defines properties, so a label named __proto__ stays a label.
  if (labels.size > 0) change.labels = Object.fromEntries(labels);
  return change;
}

/** The grammar of the group's kind (docs/api.md, docs/probes.md), shared by every format. */
function checkValues(change: Change, kind: Kind): Change {
  const problemOf = targetProblemOf(kind);
  for (const target of change.targets ?? []) {
    const problem = problemOf(target);
    if (problem !== undefined) {
      throw new RuleError(
        400,
        kind === "probes"
          ? `probe target ${JSON.stringify(target)} is not an http(s) URL or host[:port]: ${problem}`
          : `target ${JSON.stringify(target)} is not host or host:port: ${problem}`,
      );
    }
  }
  for (const [name, value] of Object.entries(change.labels ?? {})) {
    const problem = requestLabelNameProblem(name);
    if (problem !== undefined) throw new RuleError(400, problem);
    const valueProblem = labelValueProblem(name, value);
    if (valueProblem !== undefined) throw new RuleError(400, valueProblem);
  }
  return change;
}
