import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
let outDir: string;

// The gateway serves dist/web under `script-src 'self'; style-src 'self'`: the page works only if
// index.html loads its script and style from files, and every file it names exists.
describe("web/build.mjs", () => {
  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), "gatehouse-web-"));
    await run(process.execPath, ["web/build.mjs", outDir]);
  });
  afterAll(() => rm(outDir, { recursive: true, force: true }));

  it("writes index.html and one hashed script and stylesheet", async () => {
    const assets = await readdir(join(outDir, "assets"));
    expect(assets).toHaveLength(2);
    expect(assets.filter((name) => /^app-[A-Z0-9]+\.css$/.test(name))).toHaveLength(1);
    expect(assets.filter((name) => /^app-[A-Z0-9]+\.js$/.test(name))).toHaveLength(1);
    const html = await readFile(join(outDir, "index.html"), "utf8");
    for (const asset of assets) expect(html).toContain(`./assets/${asset}`);
  });

  it("puts no inline script, inline style or external URL in index.html", async () => {
    const html = await readFile(join(outDir, "index.html"), "utf8");
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts).toHaveLength(1);
    for (const [, attributes, body] of scripts) {
      expect(attributes).toMatch(/\bsrc="\.\/assets\//);
      expect(body?.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);
  });

  it("bundles no code that writes HTML strings into the page", async () => {
    const assets = await readdir(join(outDir, "assets"));
    const script = await readFile(
      join(
        outDir,
        "assets",
        assets.find((a) => a.endsWith(".js"))!,
      ),
      "utf8",
    );
    // Preact itself names the prop; a use of it compiles to an object key `dangerouslySetInnerHTML:`.
    const found = script.match(
      /.{0,60}(dangerouslySetInnerHTML\s*:|insertAdjacentHTML|document\.write).{0,60}/,
    );
    expect(found?.[0] ?? null).toBeNull();
  });
});
