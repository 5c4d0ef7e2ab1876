import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import fastify from "fastify";
import { GatehouseError } from "../src/protocol/errors.js";
import { DASHBOARD_CSP, installDashboardSecurityHeaders } from "../src/gateway/dashboard/security-headers.js";
import { loadDashboardFiles, registerDashboardStaticFiles } from "../src/gateway/dashboard/static-files.js";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A built front-end as web/build.mjs leaves it, in a temporary directory. */
function fakeWebDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-web-"));
  dirs.push(dir);
  mkdirSync(path.join(dir, "assets", "nested"), { recursive: true });
  writeFileSync(
    path.join(dir, "index.html"),
    '<!doctype html><script src="/dashboard/assets/app-1.js"></script>',
  );
  writeFileSync(path.join(dir, "assets", "app-1.js"), "console.log(1)");
  writeFileSync(path.join(dir, "assets", "app-1.css"), "body{}");
  writeFileSync(path.join(dir, "assets", "logo.svg"), "<svg/>");
  writeFileSync(path.join(dir, "assets", "nested", "secret.txt"), "no");
  return dir;
}

async function appFor(dir: string) {
  const app = fastify();
  app.setErrorHandler((error, _request, reply) => {
    const known = error instanceof GatehouseError ? error : new GatehouseError("internal_error");
    return reply.code(known.status).send(known.toBody());
  });
  installDashboardSecurityHeaders(app);
  registerDashboardStaticFiles(app, loadDashboardFiles(dir));
  app.get("/api/v1/other", async () => ({ ok: true }));
  await app.ready();
  return app;
}

describe("the dashboard's static files", () => {
  it("serves index.html (no-cache) and hashed assets (immutable) with their content types and the CSP", async () => {
    const app = await appFor(fakeWebDir());
    const index = await app.inject({ url: "/dashboard/" });
    expect(index.statusCode).toBe(200);
    expect(index.body).toContain("app-1.js");
    expect(index.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(index.headers["cache-control"]).toBe("no-cache");
    expect(index.headers["content-security-policy"]).toBe(DASHBOARD_CSP);
    for (const [file, type] of [
      ["app-1.js", "text/javascript; charset=utf-8"],
      ["app-1.css", "text/css; charset=utf-8"],
      ["logo.svg", "image/svg+xml"],
    ] as const) {
      const asset = await app.inject({ url: `/dashboard/assets/${file}` });
      expect(asset.statusCode, file).toBe(200);
      expect(asset.headers["content-type"], file).toBe(type);
      expect(asset.headers["cache-control"], file).toBe("public, max-age=31536000, immutable");
      expect(asset.headers["x-content-type-options"], file).toBe("nosniff");
    }
    expect((await app.inject({ method: "HEAD", url: "/dashboard/assets/app-1.js" })).statusCode).toBe(200);
    await app.close();
  });

  it("an unknown asset, a sub-directory or a path outside assets/ is 404 not_found, with the headers", async () => {
    const app = await appFor(fakeWebDir());
    for (const url of [
      "/dashboard/assets/app-2.js",
      "/dashboard/assets/nested",
      "/dashboard/assets/nested%2Fsecret.txt",
      "/dashboard/assets/..%2Findex.html",
      "/dashboard/assets/__proto__",
    ]) {
      const answer = await app.inject({ url });
      expect(answer.statusCode, url).toBe(404);
      expect(answer.json(), url).toMatchObject({ error: "not_found" });
      expect(answer.headers["x-frame-options"], url).toBe("DENY");
    }
    expect((await app.inject({ url: "/api/v1/other" })).headers["content-security-policy"]).toBeUndefined();
    await app.close();
  });

  it("without built files /dashboard/ answers 503 unavailable naming npm run build, under the CSP", async () => {
    const app = await appFor(path.join(os.tmpdir(), "gh-web-does-not-exist"));
    const answer = await app.inject({ url: "/dashboard/" });
    expect(answer.statusCode).toBe(503);
    expect(answer.json()).toMatchObject({ error: "unavailable" });
    expect(answer.json<{ hint: string }>().hint).toContain("npm run build");
    expect(answer.headers["content-security-policy"]).toBe(DASHBOARD_CSP);
    const redirect = await app.inject({ url: "/dashboard" });
    expect(redirect.statusCode).toBe(308);
    expect(redirect.headers.location).toBe("/dashboard/");
    await app.close();
  });
});
