/**
 * Path parameters of every `:param` route and the query strings the gateway reads, over real
 * HTTPS: long values, percent-encoding junk, encoded slashes and dots, unicode, repeated and
 * bracketed query keys. Each answer is the route's own or a catalogue error, and a refusal leaves
 * the store as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { junkString } from "./arbitraries.js";
import {
  expectSuccessOrCatalogue,
  runs,
  startHostileGateway,
  watchSession,
  type HostileGateway,
} from "./harness.js";

let gateway: HostileGateway;
let watcher: Awaited<ReturnType<typeof watchSession>>;

beforeAll(async () => {
  gateway = await startHostileGateway();
  watcher = await watchSession(gateway, "paths-watcher");
});

afterAll(async () => {
  watcher?.close();
  await gateway?.close();
});

/** Every route with a path parameter (src/gateway/routes/*.ts), with a body its schema accepts. */
const PARAM_ROUTES: { method: string; path: (p: string) => string; body?: string }[] = [
  { method: "GET", path: (p) => `/api/v1/enroll/${p}` },
  { method: "GET", path: (p) => `/api/v1/devices/${p}` },
  { method: "POST", path: (p) => `/api/v1/devices/${p}/approve`, body: "{}" },
  { method: "POST", path: (p) => `/api/v1/devices/${p}/deny`, body: "{}" },
  { method: "POST", path: (p) => `/api/v1/devices/${p}/revoke`, body: "{}" },
  { method: "POST", path: (p) => `/api/v1/enroll-tokens/${p}/revoke`, body: "{}" },
  { method: "POST", path: (p) => `/api/v1/keys/${p}/revoke`, body: "{}" },
  { method: "POST", path: (p) => `/api/v1/keys/${p}/rotate`, body: "{}" },
  { method: "POST", path: (p) => `/api/v1/nodes/${p}/exec`, body: '{"command":"status"}' },
  { method: "GET", path: (p) => `/api/v1/nodes/${p}/history` },
];

/** Characters a request path may carry unescaped (Node's client refuses the rest). */
const pathSafe = fc.constantFrom(
  ..."abcXYZ019-._~!$&'()*+,;=:@%".split(""),
  "%00",
  "%2f",
  "%2F",
  "%2e%2e",
  "%5c",
  "%ff",
  "%c0%80",
  "%e2%80%ae",
  "%zz",
  "%",
  "%%",
  "%u0041",
  "..",
  "%0d%0a",
  "%20",
  "%ef%bb%bf",
);

const pathParameter = fc.oneof(
  fc.array(pathSafe, { minLength: 1, maxLength: 40 }).map((parts) => parts.join("")),
  junkString(60)
    .filter((s) => s.length > 0)
    .map((s) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, "x"))),
  fc.integer({ min: 90, max: 6000 }).map((n) => "a".repeat(n)),
  fc.integer({ min: 30, max: 2000 }).map((n) => "%41".repeat(n)),
  fc.constantFrom("dev_", "BCDF-GHJK", "bcdfghjk", "admin", ".", "..", "%2e", "req_", "key_"),
);

describe("hostile paths and queries", () => {
  it("path parameters of every :param route: the route's answer or a catalogue error", async () => {
    await fc.assert(
      fc.asyncProperty(
        pathParameter,
        fc.nat({ max: PARAM_ROUTES.length - 1 }),
        fc.boolean(),
        async (param, which, asAdmin) => {
          const route = PARAM_ROUTES[which]!;
          const before = await gateway.snapshot();
          const reply = await gateway.call({
            method: route.method,
            path: route.path(param),
            ...(route.body ? { body: route.body } : {}),
            agent: asAdmin ? gateway.adminAgent : gateway.anonymousAgent,
          });
          expectSuccessOrCatalogue(reply, `${route.method} ${route.path(param).slice(0, 200)}`);
          if (reply.status >= 400)
            expect(await gateway.snapshot(), "stored state after a refusal").toBe(before);
        },
      ),
      runs(300),
    );
  });

  it("query strings on every route that reads one: the route's answer or a catalogue error", async () => {
    const key = fc.oneof(
      fc.constantFrom(
        "status",
        "afterId",
        "limit",
        "subject",
        "format",
        "status[]",
        "limit[0]",
        "__proto__",
        "a.b",
      ),
      fc.array(pathSafe, { maxLength: 6 }).map((p) => p.join("")),
    );
    const value = fc.oneof(
      fc.array(pathSafe, { maxLength: 30 }).map((p) => p.join("")),
      fc.constantFrom(
        "pending",
        "approved",
        "-1",
        "1e9",
        "NaN",
        "Infinity",
        "0x10",
        "1.5",
        "",
        "pem",
        "der",
        "99999999999999999999",
      ),
      fc.integer({ min: 200, max: 5000 }).map((n) => "9".repeat(n)),
    );
    const query = fc
      .tuple(
        fc.array(fc.tuple(key, value, fc.constantFrom("=", "", "==")), { minLength: 1, maxLength: 6 }),
        fc.constantFrom("&", ";", "&&"),
      )
      .map(([pairs, separator]) => pairs.map(([k, v, eq]) => `${k}${eq}${v}`).join(separator));
    const routes = [
      "/api/v1/devices",
      "/api/v1/audit",
      "/api/v1/nodes/no-such-node/history",
      "/api/v1/crl",
      "/api/v1/nodes",
      "/api/v1/enroll-tokens",
      "/api/v1/keys",
      "/health",
    ];
    await fc.assert(
      fc.asyncProperty(query, fc.nat({ max: routes.length - 1 }), async (q, which) => {
        const path = `${routes[which]!}?${q}`;
        const before = await gateway.snapshot();
        const reply = await gateway.call({ path, agent: gateway.adminAgent });
        if (reply.status === 200 && routes[which] === "/api/v1/crl") return;
        expectSuccessOrCatalogue(reply, `GET ${path.slice(0, 300)}`);
        if (reply.status >= 400) expect(await gateway.snapshot()).toBe(before);
      }),
      runs(250),
    );
  });

  it("unknown paths of any shape: a catalogue not_found or invalid_request", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(pathParameter, { minLength: 1, maxLength: 5 }),
        fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"),
        async (segments, method) => {
          const path = `/api/${segments.join("/")}`;
          const reply = await gateway.call({ method, path, agent: gateway.anonymousAgent });
          if (method === "HEAD") {
            expect(reply.status, `HEAD ${path}`).not.toBe(500);
            return;
          }
          expectSuccessOrCatalogue(reply, `${method} ${path.slice(0, 200)}`);
        },
      ),
      runs(150),
    );
  });

  it("after the run: a node session opened before it is still up and answering", async () => {
    await watcher.expectStillUp();
  });
});
