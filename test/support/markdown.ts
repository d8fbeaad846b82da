/**
 * The fenced code blocks of a Markdown page, for the tests that run what the docs show
 * (test/docs/curl-lines.test.ts, test/contrib/systemd-install.test.ts). Only ``` fences,
 * which is all the repository's pages use.
 */
export interface CodeBlock {
  /** The info string after the opening fence: `bash`, `sh`, `yaml`, or "" for none. */
  readonly language: string;
  /** The block's lines, without the fences. */
  readonly lines: readonly string[];
  /** 1-based line of the page where the block's first line is. */
  readonly firstLine: number;
  /** The nearest heading above the block (`## Install the service`), or "" before any. */
  readonly heading: string;
}

export function codeBlocks(markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split("\n");
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const fence = /^```\s*([A-Za-z0-9_-]*)\s*$/.exec(line);
    if (fence === null) {
      if (/^#{1,6} /.test(line)) heading = line;
      continue;
    }
    const end = lines.findIndex((candidate, j) => j > i && /^```\s*$/.test(candidate));
    if (end < 0) throw new Error(`an unclosed code block at line ${i + 1}`);
    blocks.push({ language: fence[1] ?? "", lines: lines.slice(i + 1, end), firstLine: i + 2, heading });
    i = end;
  }
  return blocks;
}

/** The shell blocks (```bash, ```sh, ```) under `heading` (a whole heading line, e.g. `## Install the service`). */
export function shellBlocksUnder(markdown: string, heading: string): CodeBlock[] {
  return codeBlocks(markdown).filter((block) => block.heading === heading && ["bash", "sh", ""].includes(block.language));
}

/**
 * Shell lines as the shell reads them: `\` continuations joined, a here-document kept with its
 * lines (joined by newlines, up to its terminator), blank lines and whole-line comments dropped;
 * `line` is the page's line where each command starts.
 */
export function shellCommands(block: CodeBlock): { readonly text: string; readonly line: number }[] {
  const commands: { text: string; line: number }[] = [];
  const lines = block.lines;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? "";
    if (raw.trim() === "" || raw.trimStart().startsWith("#")) continue;
    const command = { text: raw, line: block.firstLine + i };
    while (command.text.endsWith("\\") && i + 1 < lines.length) {
      command.text = `${command.text.slice(0, -1)} ${(lines[++i] ?? "").trim()}`;
    }
    const hereDocument = /<<-?\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?/.exec(command.text);
    if (hereDocument !== null) {
      const end = lines.findIndex((candidate, j) => j > i && candidate.trim() === hereDocument[1]);
      if (end < 0) throw new Error(`line ${command.line}: a here-document without its terminator ${hereDocument[1]}`);
      command.text = [command.text, ...lines.slice(i + 1, end + 1)].join("\n");
      i = end;
    }
    commands.push(command);
  }
  return commands;
}
