/**
 * Every header the gateway reads, over real HTTPS: Authorization in every scheme (Basic with junk
 * and bad percent-encoding, Bearer malformed, other schemes, junk), Content-Type and
 * Content-Encoding on bodies, Accept on the CRL, the WebSocket upgrade headers, and raw header
 * bytes Node's parser refuses. Each answer is a catalogue error (or a success that is the route's
 * own), and a refusal leaves the store as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import https from "node:https";
import tls from "node:tls";
import { headerSafeString, junkString, TRICKY_CHARS } from "./arbitraries.js";
import {
  expectCatalogueError,
  expectSuccessOrCatalogue,
  jsonOrUndefined,
  readReply,
  registerApprovedNode,
  runs,
  startHostileGateway,
  watchSession,
  upgradeWith,
  type Credential,
  type HostileGateway,
  type RegisteredNode,
  type Reply,
} from "./harness.js";

let gateway: HostileGateway;
let watcher: Awaited<ReturnType<typeof watchSession>>;
let node: RegisteredNode;

beforeAll(async () => {
  gateway = await startHostileGateway();
  watcher = await watchSession(gateway, "headers-watcher");
  node = await registerApprovedNode(gateway, "headers-node");
});

afterAll(async () => {
  watcher?.close();
  await gateway?.close();
});

const percentJunk = fc.constantFrom(
  "%",
  "%z",
  "%zz",
  "%c0%af",
  "%ff%fe",
  "%%",
  "%u0041",
  "100%",
  "%0",
  "%e2%82",
);

/** `id:secret` pairs with junk and bad percent-encoding, base64-encoded as Basic wants. */
const basicCredentials = fc
  .tuple(
    fc.oneof(junkString(20), fc.constantFrom("", "client", "ghk_x")),
    fc.oneof(
      junkString(40),
      percentJunk,
      fc.tuple(junkString(10), percentJunk).map(([a, b]) => a + b),
    ),
    fc.constantFrom(":", "", "::", ":%"),
  )
  .map(([id, secret, colon]) => Buffer.from(`${id}${colon}${secret}`, "utf8").toString("base64"));

const authorization = fc.oneof(
  basicCredentials.map((b) => `Basic ${b}`),
  fc
    .tuple(fc.constantFrom("Basic", "basic", "BASIC", "Basic  ", "Basic\t"), headerSafeString(60))
    .map(([scheme, rest]) => `${scheme} ${rest}`),
  fc.constantFrom(
    "Basic",
    "Basic ",
    "Basic =",
    "Basic ====",
    "Basic Og==",
    "Basic JQ==",
    "Basic aWQ6JQ==",
    "Bearer",
    "Bearer ",
    "Bearer  ",
    "bearer x",
    "Bearer a b",
    "Bearer\tx",
    "Bearer x\t",
    "Bearer ghk_abc",
    "Bearer ....",
    "Bearer e30.e30.",
    'Digest username="a", realm="b"',
    "Negotiate YIIB",
    "NTLM TlRMTVNTUAAB",
    "AWS4-HMAC-SHA256 Credential=x",
    "Token abc",
    "ApiKey ghk_abc",
    "HOBA x",
    "",
    " ",
  ),
  fc
    .tuple(fc.constantFrom("Bearer", "Basic", "Digest", "X", ""), headerSafeString(80))
    .map(([scheme, rest]) => `${scheme}${rest}`),
  headerSafeString(200),
);

/** The routes that read Authorization: the token endpoint (Basic), validate, a scoped read. */
const AUTH_TARGETS = [
  { method: "POST", path: "/api/v1/auth/token", body: '{"grant_type":"client_credentials"}' },
  { method: "GET", path: "/api/v1/auth/validate" },
  { method: "GET", path: "/api/v1/devices" },
];

describe("hostile headers", () => {
  it("Authorization of any scheme without a credential: a catalogue refusal, nothing stored", async () => {
    await fc.assert(
      fc.asyncProperty(authorization, fc.nat({ max: AUTH_TARGETS.length - 1 }), async (value, which) => {
        const target = AUTH_TARGETS[which]!;
        const before = await gateway.snapshot();
        const reply = await gateway.call({
          method: target.method,
          path: target.path,
          ...(target.body ? { body: target.body } : {}),
          headers: { authorization: value },
        });
        expectCatalogueError(reply, `${target.path} Authorization: ${JSON.stringify(value)}`);
        expect(await gateway.snapshot(), "stored state after a refusal").toBe(before);
      }),
      runs(250),
    );
  });

  it("Authorization junk beside a valid client certificate: the route's answer or a catalogue error", async () => {
    const nodeAgent = gateway.agentFor(node);
    await fc.assert(
      fc.asyncProperty(authorization, fc.boolean(), async (value, asAdmin) => {
        const before = await gateway.snapshot();
        const reply = await gateway.call({
          path: asAdmin ? "/api/v1/devices" : "/api/v1/auth/validate",
          headers: { authorization: value },
          agent: asAdmin ? gateway.adminAgent : nodeAgent,
        });
        expectSuccessOrCatalogue(reply, `Authorization: ${JSON.stringify(value)}`);
        if (reply.status >= 400) expect(await gateway.snapshot()).toBe(before);
      }),
      runs(100),
    );
  });

  it("Authorization on the node session upgrade: refused with the catalogue's body", async () => {
    await fc.assert(
      fc.asyncProperty(authorization, async (value) => {
        const reply = await upgradeWith(gateway, { authorization: value });
        expectCatalogueError(reply, `connect Authorization: ${JSON.stringify(value)}`);
      }),
      runs(80),
    );
  });

  it("Content-Type and Content-Encoding junk on bodies: a catalogue error, nothing stored", async () => {
    const contentType = fc.oneof(
      fc.constantFrom(
        "application/json; charset=utf-16",
        "application/json; charset=x-junk",
        "application/json;;;",
        "application/JSON",
        "application/json, text/plain",
        "application/x-www-form-urlencoded; charset=latin1",
        "multipart/form-data; boundary=x",
        "text/plain",
        "application/octet-stream",
        "application/*",
        "*/*",
        "",
      ),
      headerSafeString(60),
    );
    const encoding = fc.option(fc.constantFrom("gzip", "br", "deflate", "identity", "x-junk", "gzip, gzip"));
    const targets = [
      { path: "/api/v1/enroll", agent: () => gateway.anonymousAgent },
      { path: "/api/v1/auth/token", agent: () => gateway.anonymousAgent },
      { path: "/api/v1/keys", agent: () => gateway.adminAgent },
    ];
    await fc.assert(
      fc.asyncProperty(
        contentType,
        encoding,
        fc.nat({ max: targets.length - 1 }),
        fc.oneof(fc.constant('{"name":"x"}'), junkString(100)),
        async (type, contentEncoding, which, body) => {
          const target = targets[which]!;
          const before = await gateway.snapshot();
          const reply = await gateway.call({
            path: target.path,
            body,
            agent: target.agent(),
            headers: {
              "content-type": type,
              ...(contentEncoding ? { "content-encoding": contentEncoding } : {}),
            },
          });
          expectCatalogueError(
            reply,
            `${target.path} Content-Type: ${JSON.stringify(type)} ${contentEncoding}`,
          );
          expect(await gateway.snapshot()).toBe(before);
        },
      ),
      runs(150),
    );
  });

  it("Accept junk on the CRL: the CRL itself, or a catalogue error", async () => {
    await fc.assert(
      fc.asyncProperty(headerSafeString(100), fc.option(junkString(20)), async (accept, format) => {
        const query =
          format === null ? "" : `?format=${encodeURIComponent(format.replace(/[\ud800-\udfff]/g, "?"))}`;
        const reply = await gateway.call({ path: `/api/v1/crl${query}`, headers: { accept } });
        if (reply.status === 200) {
          expect(String(reply.headers["content-type"])).toMatch(/^application\/(pkix-crl|x-pem-file)/);
          return;
        }
        expectCatalogueError(reply, `crl Accept: ${JSON.stringify(accept)}`);
      }),
      runs(60),
    );
  });

  it("WebSocket upgrade headers with junk: a catalogue error, never the WebSocket library's own body", async () => {
    const upgradeHeaders = fc.record(
      {
        connection: fc.constantFrom("Upgrade", "upgrade, keep-alive", "close", "x"),
        upgrade: fc.constantFrom("websocket", "WebSocket", "h2c", "websocket, x", ""),
        "sec-websocket-key": fc.oneof(fc.constant("dGhlIHNhbXBsZSBub25jZQ=="), headerSafeString(40)),
        "sec-websocket-version": fc.oneof(fc.constantFrom("13", "8", "14", ""), headerSafeString(8)),
        "sec-websocket-protocol": headerSafeString(30),
        "sec-websocket-extensions": fc.oneof(
          fc.constantFrom("permessage-deflate; client_max_window_bits=99", "x-junk"),
          headerSafeString(40),
        ),
      },
      { requiredKeys: ["connection", "upgrade"] },
    );
    await fc.assert(
      fc.asyncProperty(
        upgradeHeaders,
        fc.constantFrom("/api/v1/connect", "/api/v1/devices", "/health"),
        fc.boolean(),
        async (headers, path, asNode) => {
          const reply = await rawUpgrade(path, headers, asNode ? node : undefined);
          if (reply.status === 101 || (reply.status === 200 && path === "/health")) return;
          if (reply.status === 200 && path !== "/api/v1/connect") {
            expectSuccessOrCatalogue(reply);
            return;
          }
          expectCatalogueError(reply, `${path} ${JSON.stringify(headers)}`);
        },
      ),
      runs(120),
    );
  });

  it("raw header bytes Node's HTTP parser refuses: the catalogue's body", async () => {
    const junkLine = fc.oneof(
      fc.string({ maxLength: 60, unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)) }),
      fc.constantFrom(
        "X-A: b\rc",
        "X-A: \u0000",
        "Bad Header: x",
        ": empty-name",
        "Content-Length: -1",
        "Content-Length: 1\r\nContent-Length: 2",
        "Transfer-Encoding: chunked\r\nContent-Length: 3",
        "Transfer-Encoding: x-junk",
        "Host: a\r\nHost: b",
        " folded: continuation",
        ...TRICKY_CHARS.map((c) => `X-T: ${c}`),
      ),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(junkLine, { minLength: 1, maxLength: 4 }), async (lines) => {
        const head = `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n${lines.join("\r\n")}\r\nConnection: close\r\n\r\n`;
        const reply = await rawRequest(Buffer.from(head, "latin1"));
        if (reply.status === 200) return;
        expectCatalogueError(reply, `raw head ${JSON.stringify(head)}`);
      }),
      runs(150),
    );
  });

  it("after the run: a node session opened before it is still up and answering", async () => {
    await watcher.expectStillUp();
  });
});

/**
 * A request with upgrade headers on a connection of its own (an upgraded or refused connection is
 * never reused): a 101 (the upgrade happened) or the HTTP answer.
 */
function rawUpgrade(path: string, headers: Record<string, string>, credential?: Credential): Promise<Reply> {
  const target = new URL(gateway.url);
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: target.hostname,
        port: target.port,
        path,
        headers,
        agent: false,
        ca: gateway.caPem,
        ...credential,
      },
      (response) => {
        readReply(response).then(resolve, reject);
      },
    );
    request.on("upgrade", (_response, socket) => {
      socket.destroy();
      resolve({ status: 101, headers: {}, text: "", json: undefined });
    });
    request.on("error", reject);
    request.setTimeout(20_000, () => request.destroy(new Error("no answer to the upgrade")));
    request.end();
  });
}

/** Writes raw bytes on a TLS connection and parses the one HTTP answer (status, headers, body). */
function rawRequest(bytes: Buffer): Promise<Reply> {
  const target = new URL(gateway.url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: target.hostname, port: Number(target.port), ca: gateway.caPem });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to a raw request within 20 s: ${JSON.stringify(data.toString("latin1"))}`));
    }, 20_000);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const text = data.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      const head = end >= 0 ? text.slice(0, end) : text;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of head.split("\r\n").slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body =
        end >= 0 ? data.subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1")).toString() : "";
      resolve({ status, headers, text: head + "\n\n" + body, json: jsonOrUndefined(body) });
    };
    socket.on("secureConnect", () => socket.write(bytes));
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const text = data.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1];
      if (end >= 0 && length !== undefined && data.length >= end + 4 + Number(length)) finish();
    });
    socket.on("end", finish);
    socket.on("close", finish);
    socket.on("error", () => finish());
  });
}
