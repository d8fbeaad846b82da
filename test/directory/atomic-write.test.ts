import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { NO_DEADLINES } from "../../src/model.js";
import { temporaryPathFor, writeFileAtomically } from "../../src/directory/atomic-write.js";
import { isLeftoverTempFile } from "../../src/directory/naming.js";
import { FileStore } from "../../src/filestore/store.js";
import { makeTempDir, removeDir, silentLogger } from "../helpers.js";

const MODE = { bits: 0o644, umaskStripsBits: true };

describe("atomic write", () => {
  it("replaces the file's contents and leaves nothing else behind", async () => {
    const directory = await makeTempDir();
    try {
      const path = join(directory, "billing@prod.json");
      await writeFile(path, "old\n");
      await writeFileAtomically(path, "new\n", MODE);
      await writeFileAtomically(path, "newer\n", MODE);
      expect(await readFile(path, "utf8")).toBe("newer\n");
      expect(await readdir(directory)).toEqual(["billing@prod.json"]);
    } finally {
      await removeDir(directory);
    }
  });

  it("gives a new file rw-r--r--, whatever the file it replaces had", async () => {
    const directory = await makeTempDir();
    try {
      const path = join(directory, "billing@prod.json");
      await writeFile(path, "old\n", { mode: 0o600 });
      await writeFileAtomically(path, "new\n", MODE);
      expect((await stat(path)).mode & 0o777).toBe(0o644);
    } finally {
      await removeDir(directory);
    }
  });

  it("the store's files stay readable by Prometheus under a umask of 077", async () => {
    const directory = await makeTempDir();
    const umask = process.umask(0o077);
    try {
      const store = await FileStore.open({ directory, logger: silentLogger });
      await store.update({ kind: "targets", application: "billing", environment: "prod" }, () => ({ group: { targets: ["a:1"], labels: {} }, expires: NO_DEADLINES }));
      expect((await stat(join(directory, "billing@prod.json"))).mode & 0o777).toBe(0o644);
    } finally {
      process.umask(umask);
      await removeDir(directory);
    }
  });

  it("a failed rename leaves the target as it was and no temporary file", async () => {
    const directory = await makeTempDir();
    try {
      // A non-empty directory where the file should be: rename(2) refuses to replace it.
      const path = join(directory, "billing@prod.json");
      await mkdir(path);
      await writeFile(join(path, "inside"), "");
      await expect(writeFileAtomically(path, "new\n", MODE)).rejects.toThrow();
      expect(await readdir(directory)).toEqual(["billing@prod.json"]);
      expect(await readdir(path)).toEqual(["inside"]);
    } finally {
      await removeDir(directory);
    }
  });

  it("names temporary files the way start-up recognises and removes, never *.json", () => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const name = basename(temporaryPathFor("/srv/file_sd/billing@prod.json"));
      expect(name.endsWith(".json")).toBe(false);
      expect(isLeftoverTempFile("targets", name)).toBe(true);
    }
  });
});
