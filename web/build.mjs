// Bundles the dashboard (web/src) into dist/web: index.html plus content-hashed app-<hash>.js and
// app-<hash>.css under assets/. The gateway serves these files as they are, under a CSP that allows
// only same-origin scripts and styles, so index.html carries no inline script or style.
// Usage: node web/build.mjs [outDir]   (default dist/web; tests build into a temporary directory)
import { build } from "esbuild";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const outDir = process.argv[2] ? resolve(process.argv[2]) : join(root, "dist", "web");
const assetsDir = join(outDir, "assets");

// Old hashed files would otherwise pile up and be served forever.
await rm(outDir, { recursive: true, force: true });
await mkdir(assetsDir, { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: { app: "web/src/main.tsx" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "[name]-[hash]",
  outdir: assetsDir,
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((file) => basename(file));
const script = outputs.find((file) => file.endsWith(".js"));
const style = outputs.find((file) => file.endsWith(".css"));
if (!script || !style) throw new Error(`web build: expected one .js and one .css, got ${outputs.join(", ")}`);

// Relative asset paths: the page lives at /dashboard/. The empty data: icon stops the browser
// asking for /favicon.ico (img-src allows data:).
const html = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="referrer" content="no-referrer" />
    <title>Gatehouse</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="./assets/${style}" />
    <script type="module" src="./assets/${script}"></script>
  </head>
  <body>
    <div id="app"></div>
  </body>
</html>
`;
await writeFile(join(outDir, "index.html"), html);
