import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { GatehouseError } from "../../protocol/errors.js";

/**
 * Where the built front-end lives: `dist/web`, beside this module's own `dist/gateway/dashboard`.
 * (Run from the sources, it resolves to `src/web`, which does not exist: the dashboard answers 503.)
 */
export const DEFAULT_WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../web");

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".map": "application/json; charset=utf-8",
  ".woff2": "font/woff2",
};

/** Hashed asset names never change content: a browser may keep them for a year (RFC 8246). */
const ASSET_CACHE = "public, max-age=31536000, immutable";

interface StaticFile {
  body: Buffer;
  contentType: string;
}

/** The dashboard's files, read once: `index.html` and the files directly in `assets/`. */
export interface DashboardFiles {
  index: Buffer;
  assets: Map<string, StaticFile>;
}

/**
 * Reads the built front-end from `dir` (`index.html`, `assets/<file>`) into memory; undefined when
 * `index.html` is missing (a gateway built without `npm run build`'s web step). Sub-directories of
 * `assets/` and other entries are ignored, so no request path can reach outside the listed files.
 */
export function loadDashboardFiles(dir: string): DashboardFiles | undefined {
  let index: Buffer;
  try {
    index = readFileSync(path.join(dir, "index.html"));
  } catch {
    return undefined;
  }
  const assets = new Map<string, StaticFile>();
  const assetDir = path.join(dir, "assets");
  let names: string[] = [];
  try {
    names = readdirSync(assetDir);
  } catch {
    // A page without assets is still a page.
  }
  for (const name of names) {
    const file = path.join(assetDir, name);
    if (!statSync(file).isFile()) continue;
    const contentType = CONTENT_TYPES[path.extname(name).toLowerCase()] ?? "application/octet-stream";
    assets.set(name, { body: readFileSync(file), contentType });
  }
  return { index, assets };
}

/**
 * `GET /dashboard` (308 to `/dashboard/`), `GET /dashboard/` (index.html, `Cache-Control:
 * no-cache`) and `GET /dashboard/assets/<file>` (immutable). With no files, `/dashboard/` answers
 * 503 `unavailable` naming the build step; an unknown asset is a 404 `not_found`.
 */
export function registerDashboardStaticFiles(app: FastifyInstance, files: DashboardFiles | undefined): void {
  app.get("/dashboard", async (_request, reply) => reply.code(308).header("location", "/dashboard/").send());

  app.get("/dashboard/", async (_request, reply) => {
    if (!files) {
      throw new GatehouseError(
        "unavailable",
        "this gateway was built without the dashboard's web files (dist/web/index.html is missing)",
        "Run `npm run build` (it builds the dashboard into dist/web), then restart the gateway.",
      );
    }
    return reply
      .header("content-type", "text/html; charset=utf-8")
      .header("cache-control", "no-cache")
      .send(files.index);
  });

  app.get<{ Params: { file: string } }>("/dashboard/assets/:file", async (request, reply) => {
    const file = files?.assets.get(request.params.file);
    if (!file) {
      throw new GatehouseError(
        "not_found",
        `no dashboard asset ${JSON.stringify(request.params.file)}`,
        "Reload /dashboard/: asset names change with every build.",
      );
    }
    return reply
      .header("content-type", file.contentType)
      .header("cache-control", ASSET_CACHE)
      .send(file.body);
  });
}
