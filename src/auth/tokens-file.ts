import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { watch, type FSWatcher } from "chokidar";
import type { Logger } from "pino";
import { parsePolicy, PolicyError, type Policy } from "./policy.js";

const SETTLE_MS = 150;

export interface TokensFileOptions {
  readonly path: string;
  readonly logger: Logger;
  readonly onReload?: (result: "ok" | "error") => void;
}

/**
 * AUTH_TOKENS_FILE, read at start and again whenever it changes. Requests read
 * `policy` once each; a reload builds a whole new Policy and swaps the reference,
 * so a request sees either the old tokens or the new ones, never half of each,
 * and none waits for a reload.
 */
export class TokensFile {
  readonly path: string;
  private current: Policy;
  private currentText: string;
  private watcher: FSWatcher | undefined;
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;
  private settling: NodeJS.Timeout | undefined;

  private constructor(
    path: string,
    text: string,
    policy: Policy,
    private readonly options: TokensFileOptions,
  ) {
    this.path = path;
    this.currentText = text;
    this.current = policy;
  }

  /** Reads and checks the file, then follows its changes. A missing or invalid file is a PolicyError naming it. */
  static async open(options: TokensFileOptions): Promise<TokensFile> {
    const path = resolve(options.path);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      throw new PolicyError(`AUTH_TOKENS_FILE ${path} cannot be read: ${(error as Error).message}`);
    }
    let policy: Policy;
    try {
      policy = parsePolicy(text);
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      throw new PolicyError(`AUTH_TOKENS_FILE ${path} is not valid: ${error.message}`);
    }
    const file = new TokensFile(path, text, policy, options);
    file.logLoaded("write tokens loaded");
    await file.startWatching();
    return file;
  }

  get policy(): Policy {
    return this.current;
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    clearTimeout(this.settling);
    await this.reloading;
  }

  /**
   * Watches the directory rather than the file: editors and config management
   * replace a file by renaming a new one over it, and Kubernetes swaps a `..data`
   * symlink beside it; a watch on the old inode would miss both.
   */
  private async startWatching(): Promise<void> {
    const directory = dirname(this.path);
    const name = basename(this.path);
    const relevant = (path: string): boolean => basename(path) === name || basename(path).startsWith("..");
    const watcher = watch(directory, {
      ignoreInitial: true,
      depth: 0,
      ignored: (path) => path !== directory && !relevant(path),
    });
    watcher.on("all", (_event, path) => {
      if (relevant(path)) this.settleThenReload();
    });
    watcher.on("error", (error) => this.options.logger.error({ err: error, file: this.path }, "tokens file watch error"));
    await new Promise<void>((resolveReady) => watcher.once("ready", resolveReady));
    this.watcher = watcher;
  }

  /**
   * Reads the file once events have stopped for a moment. chokidar drops a
   * `change` that follows another within 50 ms, so reading at the first event
   * could see a half-written file and then never hear of the rest.
   */
  private settleThenReload(): void {
    clearTimeout(this.settling);
    this.settling = setTimeout(() => this.reloadOneAtATime(), SETTLE_MS);
  }

  /** One reload at a time; changes that arrive during one lead to exactly one more. */
  private reloadOneAtATime(): void {
    if (this.reloading !== undefined) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = (async () => {
      do {
        this.reloadAgain = false;
        await this.reload();
      } while (this.reloadAgain);
      this.reloading = undefined;
    })();
  }

  private async reload(): Promise<void> {
    const { logger, onReload } = this.options;
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      onReload?.("error");
      logger.error(
        { file: this.path, reason: (error as Error).message },
        "tokens file cannot be read; keeping the tokens loaded before",
      );
      return;
    }
    if (text === this.currentText) return;
    try {
      this.current = parsePolicy(text);
      this.currentText = text;
    } catch (error) {
      // Whatever went wrong, the tokens in force stay: a reload must never open or close the door by accident.
      onReload?.("error");
      logger.error(
        { file: this.path, reason: (error as Error).message },
        "tokens file is not valid; keeping the tokens loaded before",
      );
      return;
    }
    onReload?.("ok");
    this.logLoaded("write tokens reloaded");
  }

  private logLoaded(message: string): void {
    const { read, tokens } = this.current;
    this.options.logger.info({ file: this.path, read, tokens: tokens.map((token) => token.name) }, message);
  }
}
