import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "js-yaml";
import { codeBlocks } from "../support/markdown.js";

/**
 * What docs/probes.md shows, for the tests that run it: its YAML blocks (the Prometheus job,
 * blackbox_exporter's configuration) and its curl lines. The tests use these, never copies,
 * so the page cannot drift from what was tested.
 */

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PROBES_DOC = join(ROOT, "docs", "probes.md");

interface Block {
  readonly language: string;
  readonly text: string;
}

async function blocks(): Promise<Block[]> {
  return codeBlocks(await readFile(PROBES_DOC, "utf8")).map((block) => ({ language: block.language, text: block.lines.map((line) => `${line}\n`).join("") }));
}

/** The one YAML block of the page that `matches`, parsed. */
async function yamlBlock(matches: RegExp, what: string): Promise<{ text: string; value: unknown }> {
  const found = (await blocks()).filter((block) => block.language === "yaml" && matches.test(block.text));
  if (found.length !== 1) throw new Error(`docs/probes.md should have one YAML block with ${what}, it has ${found.length}`);
  const [block] = found as [Block];
  return { text: block.text, value: load(block.text) };
}

export interface ScrapeJob {
  job_name: string;
  metrics_path?: string;
  file_sd_configs?: { files: string[] }[];
  relabel_configs?: { source_labels?: string[]; target_label?: string; replacement?: string }[];
  [key: string]: unknown;
}

/** The page's Prometheus job for probes. */
export async function probesJob(): Promise<ScrapeJob> {
  const { value } = await yamlBlock(/job_name: probes/, "the probes job");
  const jobs = (value as { scrape_configs: ScrapeJob[] }).scrape_configs;
  if (jobs.length !== 1) throw new Error("the probes job's block should hold that one job");
  return jobs[0] as ScrapeJob;
}

/** The page's blackbox_exporter configuration, as text (what the exporter is given). */
export async function blackboxConfig(): Promise<string> {
  return (await yamlBlock(/^modules:/m, "blackbox_exporter's modules")).text;
}

/** Every shell line of the page that runs curl against `$S`. */
export async function curlLines(): Promise<string[]> {
  return (await blocks())
    .filter((block) => block.language === "bash")
    .flatMap((block) => block.text.split("\n"))
    .filter((line) => line.startsWith("curl ") && line.includes("$S/"));
}

/** The one curl line of the page that contains `part`. */
export async function curlLine(part: string): Promise<string> {
  const found = (await curlLines()).filter((line) => line.includes(part));
  if (found.length !== 1) throw new Error(`docs/probes.md should have one curl line with ${JSON.stringify(part)}, it has ${found.length}`);
  return found[0] as string;
}
