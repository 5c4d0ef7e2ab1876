/**
 * The dashboard attacked from outside: a hostile browser (odd cookies, cross-site forms, stale and
 * foreign CSRF tokens, crafted links and paths), a hostile node (markup in every string it can
 * set) and a hostile peer (many and slow event streams). A gateway runs in this process on a temp
 * home with the front-end built into a temp directory; its log lines are kept, so a test can show
 * that no secret reaches them. Every refusal is a catalogue answer and leaves an audit entry.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import WebSocket from "ws";
import type { Browser, Page } from "playwright-core";
import { call, expectCatalogueError, runs, upgradeWith, type Reply } from "./harness.js";
import { launchBrowser, newContext, openTab } from "../e2e/browser.js";
import { GATEWAY_FILES, NODE_FILES, writeJsonAtomic } from "../../src/config/index.js";
import { initGatewayHome } from "../../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../../src/gateway/start.js";
import { createCsr, exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.js";
import { SESSION_IDLE_MS } from "../../src/gateway/dashboard/sessions.js";
import { MAX_EVENT_STREAMS } from "../../src/gateway/routes/events.js";

const COOKIE = "__Host-gatehouse-session";
const ROOT = path.resolve(import.meta.dirname, "../..");

let dir: string;
let home: string;
let running: RunningGateway;
let url: string;
let caPem: string;
let adminAgent: https.Agent;
let anonymousAgent: https.Agent;
let db: Database.Database;
/** Every line the gateway logged (level debug). */
const logLines: string[] = [];
/** The gateway's clock: real time plus this offset, so a test can move past an idle timeout. */
let clockOffsetMs = 0;
/** Every secret handed out in this file: none may appear in a log line or an audit row. */
const secrets = new Set<string>();
/** The code of every refusal the gateway handed to its audit log. */
const auditedRefusals: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-hostile-dashboard-"));
  home = path.join(dir, "home");
  const webDir = path.join(dir, "web");
  await promisify(execFile)(process.execPath, [path.join(ROOT, "web/build.mjs"), webDir], { cwd: ROOT });
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  const configFile = path.join(home, GATEWAY_FILES.config);
  const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
  config.enroll = { perAddressPerMinute: 1_000_000 };
  config.logLevel = "debug";
  config.roles = { auditor: ["audit:read"] };
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  running = await startGateway(home, {
    webDir,
    now: () => new Date(Date.now() + clockOffsetMs),
    logDestination: { write: (line: string) => void logLines.push(line) },
  });
  url = running.url;
  caPem = readFileSync(path.join(home, GATEWAY_FILES.caCert), "utf8");
  adminAgent = new https.Agent({
    ca: caPem,
    key: readFileSync(path.join(home, GATEWAY_FILES.adminKey), "utf8"),
    cert: readFileSync(path.join(home, GATEWAY_FILES.adminCert), "utf8"),
  });
  anonymousAgent = new https.Agent({ ca: caPem });
  db = new Database(path.join(home, GATEWAY_FILES.database), { readonly: true, fileMustExist: true });
  // Count every refusal handed to the audit log (which folds a flood into summary rows).
  const audit = running.ctx.audit;
  const recordRefusal = audit.recordRefusal.bind(audit);
  audit.recordRefusal = (event) => {
    auditedRefusals.push(String(event.code));
    recordRefusal(event);
  };
}, 120_000);

afterAll(async () => {
  adminAgent?.destroy();
  anonymousAgent?.destroy();
  db?.close();
  await running?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A request as a browser sends it: no client certificate, the given headers. */
function browser(options: Parameters<typeof call>[1]): Promise<Reply> {
  return call(url, { agent: anonymousAgent, ...options });
}

function admin(options: Parameters<typeof call>[1]): Promise<Reply> {
  return call(url, { agent: adminAgent, ...options });
}

/** A fresh login link's token, asked for with the home's admin certificate. */
async function linkToken(role = "admin"): Promise<string> {
  const reply = await admin({ path: "/api/v1/dashboard/login-links", body: JSON.stringify({ role }) });
  expect(reply.status, reply.text).toBe(201);
  const token = new URL((reply.json as { path: string }).path, url).searchParams.get("token")!;
  secrets.add(token);
  return token;
}

/** The session cookie a Set-Cookie header sets, or undefined. */
function setCookieValue(reply: Reply): string | undefined {
  const header = ([] as string[]).concat(reply.headers["set-cookie"] ?? []).join("\n");
  return new RegExp(`${COOKIE}=([^;]*)`).exec(header)?.[1];
}

interface Session {
  cookie: string;
  csrf: string;
  header: string;
}

/** Redeems a fresh link as a browser does: the cookie it sets and the session's CSRF token. */
async function login(role = "admin"): Promise<Session> {
  const token = await linkToken(role);
  const redeemed = await browser({ path: `/dashboard/login?token=${token}` });
  expect(redeemed.status, redeemed.text).toBe(303);
  const cookie = setCookieValue(redeemed)!;
  secrets.add(cookie);
  const header = `${COOKIE}=${cookie}`;
  const described = await browser({ path: "/api/v1/dashboard/session", headers: { cookie: header } });
  expect(described.status, described.text).toBe(200);
  const csrf = (described.json as { csrfToken: string }).csrfToken;
  secrets.add(csrf);
  return { cookie, csrf, header };
}

async function sessionAlive(session: Session): Promise<boolean> {
  const reply = await browser({ path: "/api/v1/dashboard/session", headers: { cookie: session.header } });
  return reply.status === 200;
}

/** How many refusals with this code the gateway handed to its audit log so far. */
async function refusalsAudited(code: string): Promise<number> {
  await running.ctx.background.drain();
  return auditedRefusals.filter((audited) => audited === code).length;
}

/** A node registration over the API (name and platform are the registrant's own strings). */
async function enroll(name: string, platform: string) {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, "hostile");
  const reply = await browser({ path: "/api/v1/enroll", body: JSON.stringify({ csr, name, platform }) });
  expect(reply.status, reply.text).toBe(202);
  return { keys, ...(reply.json as { requestId: string; deviceId: string; userCode: string }) };
}

describe("login links", () => {
  it("two redeems of one link at once: exactly one opens a session, the other hears it was used", async () => {
    const token = await linkToken();
    const replies = await Promise.all(
      Array.from({ length: 6 }, () => browser({ path: `/dashboard/login?token=${token}` })),
    );
    expect(replies.filter((reply) => reply.status === 303)).toHaveLength(1);
    for (const reply of replies.filter((reply) => reply.status !== 303)) {
      expect(reply.status).toBe(401);
      expect(reply.text).toContain("This login link was already used.");
      expect(setCookieValue(reply)).toBeUndefined();
    }
  });

  it("a HEAD of the link (a mail filter or chat preview checking it) does not spend it", async () => {
    const token = await linkToken();
    const head = await browser({ path: `/dashboard/login?token=${token}`, method: "HEAD" });
    expect(head.status).not.toBe(303);
    expect(setCookieValue(head)).toBeUndefined();
    const get = await browser({ path: `/dashboard/login?token=${token}` });
    expect(get.status, get.text).toBe(303);
    expect(setCookieValue(get)).toBeDefined();
  });

  it("a cookie planted before login does not become the session (no fixation)", async () => {
    const planted = "planted-by-an-attacker-0123456789abcdefghijklmno";
    const token = await linkToken();
    const redeemed = await browser({
      path: `/dashboard/login?token=${token}`,
      headers: { cookie: `${COOKIE}=${planted}` },
    });
    expect(redeemed.status).toBe(303);
    const issued = setCookieValue(redeemed)!;
    secrets.add(issued);
    expect(issued).not.toBe(planted);
    const withPlanted = await browser({
      path: "/api/v1/dashboard/session",
      headers: { cookie: `${COOKIE}=${planted}` },
    });
    expectCatalogueError(withPlanted, "the planted cookie");
    expect((withPlanted.json as { error: string }).error).toBe("invalid_token");
    expect(await sessionAlive({ cookie: issued, csrf: "", header: `${COOKIE}=${issued}` })).toBe(true);
  });

  it("a login with another live session's cookie ends that one: a known planted session does not survive", async () => {
    const attackers = await login();
    const token = await linkToken();
    const redeemed = await browser({
      path: `/dashboard/login?token=${token}`,
      headers: { cookie: attackers.header },
    });
    expect(redeemed.status).toBe(303);
    secrets.add(setCookieValue(redeemed)!);
    expect(await sessionAlive(attackers)).toBe(false);
  });

  it("no redirect leaves the gateway, whatever next/redirect/return parameters the link carries", async () => {
    const offsite = [
      "https://evil.example/",
      "//evil.example",
      "/\\evil.example",
      "https:%2f%2fevil.example",
    ];
    for (const target of offsite) {
      const token = await linkToken();
      const query = ["next", "redirect", "return", "returnTo", "url"]
        .map((name) => `${name}=${encodeURIComponent(target)}`)
        .join("&");
      const reply = await browser({ path: `/dashboard/login?${query}&token=${token}` });
      expect(reply.status).toBe(303);
      secrets.add(setCookieValue(reply)!);
      expect(reply.headers.location).toBe("/dashboard/");
      expect(reply.headers["referrer-policy"]).toBe("no-referrer");
      expect(reply.headers["cache-control"]).toBe("no-store");
    }
    for (const probe of [
      "/dashboard?next=//evil.example",
      "/dashboard//evil.example",
      "/dashboard/login?next=//evil.example",
    ]) {
      const reply = await browser({ path: probe });
      expect(String(reply.headers.location ?? "/dashboard/"), probe).toBe("/dashboard/");
    }
  });

  it("a refused link (spent, unknown, empty, repeated, huge, non-UTF-8) is a readable page, audited as invalid_token", async () => {
    const spent = await linkToken();
    await browser({ path: `/dashboard/login?token=${spent}` }).then((r) => secrets.add(setCookieValue(r)!));
    const before = await refusalsAudited("invalid_token");
    const probes = [
      `/dashboard/login?token=${spent}`,
      "/dashboard/login",
      "/dashboard/login?token=",
      `/dashboard/login?token=a&token=b`,
      `/dashboard/login?token=${"x".repeat(6000)}`,
      "/dashboard/login?token=%ff%fe%00",
      "/dashboard/login?token[a]=b",
    ];
    for (const probe of probes) {
      const reply = await browser({ path: probe });
      expect(reply.status, probe).toBe(401);
      expect(reply.text, probe).toContain("<title>Login link refused</title>");
      expect(reply.text, probe).toContain("Run <code>gatehouse dashboard</code> again for a new link.");
      expect(reply.headers["content-security-policy"], probe).not.toContain("unsafe-inline");
    }
    expect(await refusalsAudited("invalid_token")).toBe(before + probes.length);
  });
});

describe("what a dashboard session may open", () => {
  it("a dashboard session never opens a node session, whatever its role (insufficient_scope)", async () => {
    for (const role of ["admin", "viewer"]) {
      const session = await login(role);
      const reply = await upgradeWith({ url, caPem } as Parameters<typeof upgradeWith>[0], {
        cookie: session.header,
        "x-csrf-token": session.csrf,
      });
      expectCatalogueError(reply, `node session with a ${role} dashboard cookie`);
      expect((reply.json as { error: string }).error).toBe("insufficient_scope");
    }
  });

  it("a dashboard session never creates login links or exchanges its cookie for a token", async () => {
    const session = await login();
    const link = await browser({
      path: "/api/v1/dashboard/login-links",
      headers: { cookie: session.header, "x-csrf-token": session.csrf },
      body: JSON.stringify({ role: "viewer" }),
    });
    expectCatalogueError(link);
    expect((link.json as { error: string }).error).toBe("insufficient_scope");
    const token = await browser({
      path: "/api/v1/auth/token",
      headers: { cookie: session.header, "x-csrf-token": session.csrf },
      body: JSON.stringify({ grant_type: "client_credentials" }),
    });
    expectCatalogueError(token);
  });

  it("a dashboard session never creates API keys or enroll tokens, whatever its role; the admin credential still does", async () => {
    const adminSession = await login("admin");
    const viewer = await login("viewer");
    const key = { path: "/api/v1/keys", body: JSON.stringify({ name: "from-dashboard", role: "viewer" }) };
    const enrollToken = { path: "/api/v1/enroll-tokens", body: JSON.stringify({}) };
    for (const request of [key, enrollToken]) {
      for (const session of [viewer, adminSession]) {
        const refused = await browser({
          ...request,
          headers: { cookie: session.header, "x-csrf-token": session.csrf },
        });
        expectCatalogueError(refused, `${request.path} from a dashboard session`);
        expect((refused.json as { error: string }).error).toBe("insufficient_scope");
      }
      const noCsrf = await browser({ ...request, headers: { cookie: adminSession.header } });
      expect((noCsrf.json as { error: string }).error).toBe("csrf_failed");
      const allowed = await admin(request);
      expect(allowed.status, allowed.text).toBe(201);
      for (const value of Object.values(allowed.json as Record<string, unknown>))
        if (typeof value === "string" && value.length >= 20) secrets.add(value);
    }
  });

  it("a login link for a role that cannot read devices (node) is refused: such a page could show nothing", async () => {
    const reply = await admin({
      path: "/api/v1/dashboard/login-links",
      body: JSON.stringify({ role: "node" }),
    });
    expectCatalogueError(reply);
    const body = reply.json as { error: string; error_description: string };
    expect(body.error).toBe("invalid_request");
    expect(body.error_description).toContain("devices:read");
  });

  it("a dashboard session cannot revoke the admin credential that opened it (that would lock the admin out)", async () => {
    const session = await login("admin");
    const listed = await admin({ path: "/api/v1/devices" });
    const self = (
      listed.json as { devices: { deviceId: string; kind: string; role: string }[] }
    ).devices.find((device) => device.kind === "operator" && device.role === "admin")!;
    const refused = await browser({
      path: `/api/v1/devices/${self.deviceId}/revoke`,
      headers: { cookie: session.header, "x-csrf-token": session.csrf },
      body: JSON.stringify({ reason: "clicked by mistake" }),
    });
    expectCatalogueError(refused);
    const body = refused.json as { error: string; error_description: string };
    expect(body.error).toBe("invalid_request");
    expect(body.error_description).toContain("opened with it");
    const after = await admin({ path: `/api/v1/devices/${self.deviceId}` });
    expect((after.json as { device: { status: string } }).device.status).toBe("approved");
  });

  it("an unknown role for a login link names the known roles, built-in and configured", async () => {
    const reply = await admin({
      path: "/api/v1/dashboard/login-links",
      body: JSON.stringify({ role: "root" }),
    });
    expectCatalogueError(reply);
    const body = reply.json as { error: string; error_description: string; hint: string };
    expect(body.error).toBe("invalid_request");
    const said = `${body.error_description} ${body.hint}`;
    for (const role of ["node", "viewer", "operator", "admin", "auditor"]) expect(said).toContain(role);
  });
});

describe("cookies as a hostile browser sends them", () => {
  /** Raw bytes on a TLS connection: header values Node's client would refuse to send. */
  function rawRequest(lines: Buffer): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const address = new URL(url);
      const socket = tls.connect({ host: address.hostname, port: Number(address.port), ca: caPem }, () =>
        socket.end(lines),
      );
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      socket.on("error", reject);
      socket.on("close", () => {
        const text = Buffer.concat(chunks).toString("latin1");
        const [head = "", ...rest] = text.split("\r\n\r\n");
        const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
        const headers: Record<string, string> = {};
        for (const line of head.split("\r\n").slice(1)) {
          const at = line.indexOf(":");
          headers[line.slice(0, at).toLowerCase()] = line.slice(at + 1).trim();
        }
        const body = rest.join("\r\n\r\n");
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status, headers, text: body, json });
      });
    });
  }

  it("odd Cookie headers (duplicates, prefix variants, junk, quotes) open a session only with the exact cookie; never a 500", async () => {
    const session = await login();
    const names = [
      COOKIE,
      "__host-gatehouse-session",
      "__HOST-gatehouse-session",
      "__Secure-gatehouse-session",
      "gatehouse-session",
      ` ${COOKIE}`,
      `${COOKIE} `,
      "__Host-gatehouse-session\t",
    ];
    const values = fc.oneof(
      fc.constant(session.cookie),
      fc.constant(`"${session.cookie}"`),
      fc.constant(`${session.cookie}x`),
      fc.constant(encodeURIComponent(session.cookie + "=")),
      fc.string({ maxLength: 60 }).filter((s) => !/[\r\n\0]/.test(s) && /^[\x20-\x7e]*$/.test(s)),
    );
    const pair = fc.tuple(fc.constantFrom(...names), values).map(([name, value]) => `${name}=${value}`);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(pair, fc.constantFrom(";", "=", "", "a", ";;", "=;=")), {
          minLength: 1,
          maxLength: 5,
        }),
        async (parts) => {
          const header = parts.join("; ");
          const reply = await browser({ path: "/api/v1/dashboard/session", headers: { cookie: header } });
          if (reply.status === 200) {
            // Opened only when the exact name carried the exact value, first of its name.
            // (RFC 6265 §5.2 trims the whitespace around a cookie's name and value.)
            const first = header
              .split(";")
              .map((part) => part.split("=").map((side) => side.trim()))
              .find(([name]) => name === COOKIE);
            expect([session.cookie, `"${session.cookie}"`], header).toContain(first?.slice(1).join("="));
          } else {
            expectCatalogueError(reply, header);
            expect(["invalid_token", "missing_credentials"]).toContain(
              (reply.json as { error: string }).error,
            );
          }
        },
      ),
      runs(80),
    );
    expect(await sessionAlive(session)).toBe(true);
  });

  it("a foreign cookie placed before the real one does not ride the real session", async () => {
    const session = await login();
    const reply = await browser({
      path: "/api/v1/dashboard/session",
      headers: { cookie: `${COOKIE}=forged; ${session.header}` },
    });
    expectCatalogueError(reply);
    expect((reply.json as { error: string }).error).toBe("invalid_token");
  });

  it("huge and non-UTF-8 Cookie headers are catalogue refusals", async () => {
    const huge = await browser({
      path: "/api/v1/dashboard/session",
      headers: { cookie: `${COOKIE}=${"A".repeat(12_000)}` },
    });
    expectCatalogueError(huge, "a 12 kB cookie");
    const tooBig = await browser({
      path: "/api/v1/dashboard/session",
      headers: { cookie: `${COOKIE}=${"A".repeat(70_000)}` },
    }).catch(() => undefined);
    if (tooBig) expect(tooBig.status).not.toBe(500);
    for (const bytes of [[0xff, 0xfe], [0xc3, 0x28], [0xe2, 0x82], [0x80]]) {
      const request = Buffer.concat([
        Buffer.from(
          `GET /api/v1/dashboard/session HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: ${COOKIE}=`,
        ),
        Buffer.from(bytes),
        Buffer.from("\r\n\r\n"),
      ]);
      const reply = await rawRequest(request);
      expectCatalogueError(reply, `cookie bytes ${bytes.join(",")}`);
    }
  });
});

describe("CSRF", () => {
  it("no state change without this session's own X-CSRF-Token header", async () => {
    const victim = await login();
    const other = await login();
    const attempts: { name: string; headers: Record<string, string>; path?: string; body?: string }[] = [
      { name: "no header", headers: {} },
      { name: "another session's token", headers: { "x-csrf-token": other.csrf } },
      { name: "token with a byte more", headers: { "x-csrf-token": `${victim.csrf}A` } },
      {
        name: "token in the query",
        headers: {},
        path: `/api/v1/dashboard/logout?csrfToken=${victim.csrf}&x-csrf-token=${victim.csrf}`,
      },
      {
        name: "form post",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: `csrfToken=${victim.csrf}&x-csrf-token=${victim.csrf}&_csrf=${victim.csrf}`,
      },
      {
        name: "text/plain post",
        headers: { "content-type": "text/plain" },
        body: `{"csrfToken":"${victim.csrf}"}`,
      },
      {
        name: "multipart post",
        headers: { "content-type": "multipart/form-data; boundary=x" },
        body: `--x\r\nContent-Disposition: form-data; name="x-csrf-token"\r\n\r\n${victim.csrf}\r\n--x--\r\n`,
      },
    ];
    for (const attempt of attempts) {
      const reply = await browser({
        method: "POST",
        path: attempt.path ?? "/api/v1/dashboard/logout",
        headers: { "content-type": "application/json", cookie: victim.header, ...attempt.headers },
        body: attempt.body ?? "{}",
      });
      expectCatalogueError(reply, attempt.name);
      expect((reply.json as { error: string }).error, attempt.name).toBe("csrf_failed");
      expect(await sessionAlive(victim), attempt.name).toBe(true);
    }
    // A cross-site form against a device action changes nothing either.
    const pending = await enroll("csrf-target", "linux");
    for (const contentType of ["application/x-www-form-urlencoded", "text/plain"]) {
      const reply = await browser({
        path: `/api/v1/devices/${pending.deviceId}/approve`,
        headers: { cookie: victim.header, "content-type": contentType },
        body: contentType === "text/plain" ? '{"role":"admin"}' : "role=admin",
      });
      expect((reply.json as { error: string }).error).toBe("csrf_failed");
    }
    expect(running.ctx.devices.get(pending.deviceId)?.status).toBe("pending");
  });

  it("methods other than POST never end a session or change state without the token", async () => {
    const victim = await login();
    for (const method of ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "GET", "HEAD"]) {
      const reply = await browser({
        method,
        path: "/api/v1/dashboard/logout",
        headers: { cookie: victim.header },
      });
      expect(reply.status, method).not.toBe(200);
      expect(reply.status, method).not.toBe(500);
      if (method !== "HEAD" && reply.text) expectCatalogueError(reply, method);
      expect(await sessionAlive(victim), method).toBe(true);
    }
  });

  it("CSRF refusals are audited as csrf_failed", async () => {
    const victim = await login();
    const before = await refusalsAudited("csrf_failed");
    await browser({ path: "/api/v1/dashboard/logout", headers: { cookie: victim.header }, body: "{}" });
    expect(await refusalsAudited("csrf_failed")).toBe(before + 1);
  });
});

describe("the static route", () => {
  const probes = [
    "/dashboard/assets/..%2f..%2fpackage.json",
    "/dashboard/assets/..%2F..%2Findex.html",
    "/dashboard/assets/%2e%2e%2f%2e%2e%2fpackage.json",
    "/dashboard/assets/%252e%252e%252fpackage.json",
    "/dashboard/assets/..%5c..%5cpackage.json",
    "/dashboard/assets/app.js%00.css",
    "/dashboard/assets/%00",
    "/dashboard/assets/.",
    "/dashboard/assets/..",
    "/dashboard/assets/",
    "/dashboard/..%2f..%2fpackage.json",
    "/dashboard/%2e%2e/%2e%2e/package.json",
    "/dashboard/assets/%ff%fe",
    "/dashboard/assets/%",
    "/dashboard/assets/a/../../../gateway.json",
    "/dashboard/index.html",
    "/dashboard/login%00",
    `/dashboard/assets/${"a".repeat(300)}.js`,
  ];

  it("path traversal, NUL and double encoding reach no file outside the built assets", async () => {
    for (const probe of probes) {
      for (const accept of [
        "*/*",
        "text/html",
        "application/json",
        "text/event-stream",
        "../../etc/passwd",
        "",
      ]) {
        const reply = await browser({ path: probe, headers: accept ? { accept } : {} });
        const where = `${probe} (Accept: ${accept})`;
        expect(reply.status, where).not.toBe(200);
        expectCatalogueError(reply, where);
        expect(reply.text).not.toContain('"name": "gatehouse"');
        expect(reply.headers["content-security-policy"], where).toBeDefined();
      }
    }
  });

  it("every path the router reads as the dashboard carries the dashboard's headers", async () => {
    for (const probe of [
      "/dashboard/",
      "/%64ashboard/",
      "/dashboard%2f",
      "/DASHBOARD/",
      "//dashboard/",
      "/dashboard/./",
      "/api/../dashboard/",
    ]) {
      const reply = await browser({ path: probe, headers: { accept: "text/html" } });
      if (reply.status === 200) {
        expect(reply.headers["content-security-policy"], probe).toContain("script-src 'self'");
        expect(reply.headers["x-frame-options"], probe).toBe("DENY");
      } else {
        expectCatalogueError(reply, probe);
      }
      expect(String(reply.headers["content-security-policy"] ?? "")).not.toContain("unsafe-inline");
    }
  });
});

describe("the event stream", () => {
  interface Stream {
    status: number;
    chunks: string[];
    ended: Promise<void>;
    response: import("node:http").IncomingMessage;
    destroy(): void;
  }

  /** Opens GET /api/v1/events; resolves once the headers arrived. */
  function openStream(headers: Record<string, string>, read = true): Promise<Stream> {
    return new Promise((resolve, reject) => {
      const request = https.request(
        url + "/api/v1/events",
        { agent: false, ca: caPem, headers: { accept: "text/event-stream", ...headers } },
        (response) => {
          const chunks: string[] = [];
          const ended = new Promise<void>((done) => {
            response.on("end", done);
            response.on("close", done);
            response.on("error", () => done());
          });
          if (read) response.on("data", (chunk: Buffer) => chunks.push(chunk.toString()));
          else response.pause();
          resolve({
            status: response.statusCode ?? 0,
            chunks,
            ended,
            response,
            destroy: () => request.destroy(),
          });
        },
      );
      request.on("error", reject);
      request.end();
    });
  }

  it("a stream ends once its session logs out, and once it is idle past its timeout", async () => {
    const session = await login("viewer");
    const stream = await openStream({ cookie: session.header });
    expect(stream.status).toBe(200);
    await browser({
      path: "/api/v1/dashboard/logout",
      headers: { cookie: session.header, "x-csrf-token": session.csrf },
      body: "{}",
    });
    running.ctx.events.emit("devices");
    await stream.ended;

    const idle = await login("viewer");
    const second = await openStream({ cookie: idle.header });
    clockOffsetMs += SESSION_IDLE_MS + 1000;
    try {
      running.ctx.events.emit("devices");
      await second.ended;
    } finally {
      clockOffsetMs = 0;
    }
  });

  it("a flood of changes reaches a stream as a few notices per topic, not one per change", async () => {
    const session = await login("viewer");
    const stream = await openStream({ cookie: session.header });
    try {
      expect(stream.status).toBe(200);
      const notices = (topic: string) =>
        stream.chunks.join("").split(`data: {"topic":"${topic}"}`).length - 1;
      await expect.poll(() => stream.chunks.join(""), { timeout: 30_000 }).toContain("event: ready");
      // A refusal flood: every refusal is also an audit entry.
      for (let i = 0; i < 200_000; i++) {
        running.ctx.events.emit("refusals");
        running.ctx.events.emit("audit");
      }
      await expect.poll(() => notices("audit"), { timeout: 30_000 }).toBeGreaterThan(0);
      // A later change arrives after anything the flood could still send.
      running.ctx.events.emit("nodes");
      await expect.poll(() => notices("nodes"), { timeout: 30_000 }).toBeGreaterThan(0);
      // One notice for the flood, give or take the audit entries of this test's own login that a
      // loaded machine commits late: never anywhere near one per change.
      expect(notices("audit")).toBeLessThan(10);
      expect(notices("refusals")).toBeLessThan(10);
    } finally {
      stream.destroy();
    }
  });

  it("past the cap a stream is refused with rate_limited; refused streams are audited", async () => {
    // Streams of earlier tests end when the gateway sees their connections close: count from none.
    await expect.poll(() => running.ctx.events.size, { timeout: 30_000 }).toBe(0);
    const session = await login("viewer");
    const before = await refusalsAudited("rate_limited");
    const open: Stream[] = [];
    try {
      for (let i = 0; i < MAX_EVENT_STREAMS; i++) {
        const stream = await openStream({ cookie: session.header });
        if (stream.status !== 200) break;
        open.push(stream);
      }
      const refused = await browser({ path: "/api/v1/events", headers: { cookie: session.header } });
      expectCatalogueError(refused, "one stream past the cap");
      expect((refused.json as { error: string }).error).toBe("rate_limited");
      expect(await refusalsAudited("rate_limited")).toBe(before + 1);
    } finally {
      for (const stream of open) stream.destroy();
    }
    // No dashboard session lacks devices:read (its link is refused): a token of such a role is.
    const key = await admin({
      path: "/api/v1/keys",
      body: JSON.stringify({ name: "auditor-key", role: "auditor" }),
    });
    const apiKey = (key.json as { apiKey: string }).apiKey;
    secrets.add(apiKey);
    const minted = await browser({
      path: "/api/v1/auth/token",
      body: JSON.stringify({ grant_type: "client_credentials", client_secret: apiKey }),
    });
    expect(minted.status, minted.text).toBe(200);
    const accessToken = (minted.json as { access_token: string }).access_token;
    const beforeScope = await refusalsAudited("insufficient_scope");
    const refused = await browser({
      path: "/api/v1/events",
      headers: { authorization: `Bearer ${accessToken}` },
    });
    expect((refused.json as { error: string }).error).toBe("insufficient_scope");
    expect(await refusalsAudited("insufficient_scope")).toBe(beforeScope + 1);
  });
});

describe("markup from nodes and registrations renders as text", () => {
  /** Markup that would run a script if any page put it into HTML: short enough for a name. */
  const MARK = `<img src=x onerror=__xss=1>"'&`;
  let chromiumBrowser: Browser;

  beforeAll(async () => {
    chromiumBrowser = await launchBrowser();
  }, 60_000);

  afterAll(async () => {
    await chromiumBrowser?.close();
  });

  async function expectNoScriptRan(page: Page, where: string): Promise<void> {
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), where).toBeUndefined();
    expect(await page.locator("img[src=x]").count(), where).toBe(0);
    expect(await page.locator("body script").count(), where).toBe(0);
  }

  it("names, platforms, hostnames, versions, reasons, refusal routes and audit details show as text on every page", async () => {
    // A pending registration, a denied one, a revoked node that said hello, refusals with markup.
    await enroll(`xss-pending`, `${MARK}plat`);
    // Names refuse markup outright (the names parser); platforms, reasons and hello fields take it.
    expect((await browser({ path: "/api/v1/enroll", body: JSON.stringify({ name: MARK }) })).status).toBe(
      400,
    );
    const denied = await enroll(`xss-denied`, `${MARK}den`);
    const deny = await admin({
      path: `/api/v1/devices/${denied.deviceId}/deny`,
      body: JSON.stringify({ reason: `${MARK}deny` }),
    });
    expect(deny.status, deny.text).toBe(200);
    const node = await enroll(`xss-node`, `${MARK}nod`);
    await admin({ path: `/api/v1/devices/${node.deviceId}/approve`, body: "{}" });
    const status = await browser({ path: `/api/v1/enroll/${node.requestId}` });
    const cert = (status.json as { certificate: string }).certificate;
    const socket = new WebSocket(url.replace(/^https:/, "wss:") + "/api/v1/connect", {
      ca: caPem,
      key: await exportPrivateKeyPem(node.keys.privateKey),
      cert,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("message", () => resolve());
      socket.once("error", reject);
    });
    socket.send(
      JSON.stringify({
        type: "hello",
        version: `${MARK}v`.slice(0, 64),
        platform: `${MARK}p`.slice(0, 64),
        hostname: `${MARK}h`,
      }),
    );
    const approvedOnline = await enroll(`xss-revoked`, "linux");
    await admin({ path: `/api/v1/devices/${approvedOnline.deviceId}/approve`, body: "{}" });
    await admin({
      path: `/api/v1/devices/${approvedOnline.deviceId}/revoke`,
      body: JSON.stringify({ reason: `${MARK}revoke` }),
    });
    await browser({ path: `/api/v1/devices/${encodeURIComponent(MARK)}/approve`, body: "{}" });
    await browser({ path: `/api/v1/nodes?x=${encodeURIComponent(MARK)}` });
    await browser({ path: `/dashboard/login?token=${encodeURIComponent(MARK)}` });

    const token = await linkToken();
    const context = await newContext(chromiumBrowser);
    const page = await context.newPage();
    page.on("dialog", (dialog) => void dialog.dismiss());
    try {
      const landing = await page.goto(`${url}/dashboard/login?token=${token}`);
      expect(landing?.url()).toBe(`${url}/dashboard/`);
      const csp = (await landing?.allHeaders())?.["content-security-policy"] ?? "";
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain("unsafe-inline");
      await page.getByRole("button", { name: "Logout" }).waitFor({ timeout: 30_000 });
      for (const [tab, expected] of [
        ["Pending", "pending"],
        ["Devices", "node"],
        ["Refusals", "invalid_token"],
        ["Audit", "deny"],
      ] as const) {
        await openTab(page, tab);
        await page.getByText(expected).first().waitFor({ timeout: 30_000 });
        if (tab !== "Refusals")
          await page.getByText(MARK, { exact: false }).first().waitFor({ timeout: 30_000 });
        await expectNoScriptRan(page, tab);
      }
    } finally {
      socket.terminate();
      await context.close();
    }
  }, 120_000);
});

describe("gatehouse dashboard with a node's credential", () => {
  it("is refused with insufficient_scope and says an admin credential (admin/ or --token) is needed", async () => {
    const node = await enroll("cli-node", "linux");
    await admin({ path: `/api/v1/devices/${node.deviceId}/approve`, body: "{}" });
    const status = await browser({ path: `/api/v1/enroll/${node.requestId}` });
    const nodeHome = path.join(dir, "node-home");
    mkdirSync(nodeHome, { recursive: true });
    const fingerprint = new X509Certificate(caPem).fingerprint256.replace(/:/g, "").toLowerCase();
    writeJsonAtomic(path.join(nodeHome, NODE_FILES.config), {
      gatewayUrl: url,
      caFingerprint: `sha256:${fingerprint}`,
      deviceId: node.deviceId,
    });
    writeFileSync(path.join(nodeHome, NODE_FILES.caCert), caPem);
    writeFileSync(
      path.join(nodeHome, NODE_FILES.deviceKey),
      await exportPrivateKeyPem(node.keys.privateKey),
      {
        mode: 0o600,
      },
    );
    writeFileSync(
      path.join(nodeHome, NODE_FILES.deviceCert),
      (status.json as { certificate: string }).certificate,
    );
    const result = await promisify(execFile)(
      process.execPath,
      [path.join(ROOT, "dist/cli/main.js"), "dashboard", "--home", nodeHome, "--no-open"],
      { env: { ...process.env, GATEHOUSE_TOKEN: "" } },
    ).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("insufficient_scope");
    expect(result.stderr).toContain("A login link needs an admin credential");
    expect(result.stderr).toContain("admin/");
    expect(result.stderr).toContain("--token");
  }, 60_000);
});

describe("secrets", () => {
  it("no link token, cookie value or CSRF token appears in the gateway's log or its audit rows", async () => {
    await running.ctx.background.drain();
    expect(secrets.size).toBeGreaterThan(10);
    const log = logLines.join("");
    expect(log.length).toBeGreaterThan(0);
    const audit = JSON.stringify(db.prepare("SELECT * FROM audit_events").all());
    for (const secret of secrets) {
      expect(log.includes(secret), `the log holds ${secret.slice(0, 6)}…`).toBe(false);
      expect(audit.includes(secret), `the audit holds ${secret.slice(0, 6)}…`).toBe(false);
    }
  });
});
