import { mkdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { dump } from "js-yaml";
import { blackboxConfig, probesJob } from "../probes/doc.js";
import { startBlackboxExporter, type RunningBlackboxExporter } from "./blackbox.js";
import { freePort } from "./ports.js";
import { startPrometheus, type RunningPrometheus } from "./prometheus.js";

/** What the probe tests run against: URLs to probe, Debian's blackbox_exporter, and a real Prometheus. */
export interface ProbeStack {
  /** The loopback port of the web server behind the URLs (it also serves `/metrics`, to be scraped). */
  readonly webPort: number;
  /** Answers 200. */
  readonly okUrl: string;
  /** Answers 500. */
  readonly failUrl: string;
  /** A closed port: the connection is refused. */
  readonly refusedUrl: string;
  readonly exporter: RunningBlackboxExporter;
  readonly prometheus: RunningPrometheus;
  /** Stops Prometheus, the exporter and the web server. */
  close(): Promise<void>;
}

/**
 * Starts the stack docs/probes.md describes, for `directory` (the service's, which it does not
 * start): blackbox_exporter with the page's configuration, and Prometheus (a scrape every second)
 * with a scrape job on `<directory>/*.json` beside the page's probes job, with only this
 * machine's paths put in (the folder, and the exporter's address). The `probes` folder is made
 * first, because Prometheus watches a folder only once it exists (docs/probes.md, "The
 * Prometheus job"). `failPath` is the path (and query) of the URL that answers 500.
 */
export async function startProbeStack(directory: string, { failPath = "/broken" }: { failPath?: string } = {}): Promise<ProbeStack> {
  const web: Server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://here").pathname;
    if (path === "/health") response.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    else if (path === "/metrics") response.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end("# TYPE page_probe gauge\npage_probe 1\n");
    else response.writeHead(500, { "content-type": "text/plain" }).end("down\n");
  });
  await new Promise<void>((resolve) => web.listen(0, "127.0.0.1", () => resolve()));
  const closeWeb = async (): Promise<void> => {
    web.closeAllConnections();
    await new Promise<void>((resolve) => web.close(() => resolve()));
  };
  const webPort = (web.address() as AddressInfo).port;
  let exporter: RunningBlackboxExporter | undefined;
  try {
    const refusedUrl = `http://127.0.0.1:${await freePort()}/health`;
    exporter = await startBlackboxExporter(await blackboxConfig());
    const job = await probesJob();
    const address = exporter.address;
    const here = {
      ...job,
      file_sd_configs: [{ files: [join(directory, "probes", "*.json")] }],
      relabel_configs: (job.relabel_configs ?? []).map((rule) => (rule.replacement === "blackbox-exporter:9115" ? { ...rule, replacement: address } : rule)),
    };
    await mkdir(join(directory, "probes"), { recursive: true });
    const prometheus = await startPrometheus({
      configYaml: dump({
        global: { scrape_interval: "1s", scrape_timeout: "1s" },
        scrape_configs: [{ job_name: "file_sd", file_sd_configs: [{ files: [join(directory, "*.json")] }] }, here],
      }),
    });
    const running = exporter;
    return {
      webPort,
      okUrl: `http://127.0.0.1:${webPort}/health`,
      failUrl: `http://127.0.0.1:${webPort}${failPath}`,
      refusedUrl,
      exporter: running,
      prometheus,
      close: async () => {
        await prometheus.close();
        await running.close();
        await closeWeb();
      },
    };
  } catch (error) {
    await exporter?.close();
    await closeWeb();
    throw error;
  }
}
