/**
 * Two gateway instances on one real PostgreSQL database, in this process, over real TLS on
 * loopback, as a TCP load balancer's round robin would use them: each request of one client may
 * reach either instance. What a node or a browser notices: a re-issue challenge issued by one
 * instance is answered through the other (and only once, whichever instance the replay reaches);
 * a dashboard login link made on one opens a session on the other, which every instance knows and
 * ends together; and a node connecting to one instance refreshes the node list of a dashboard
 * watching the other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import https from "node:https";
import WebSocket from "ws";
import type { RunningGateway } from "../src/gateway/start.js";
import { createCsr } from "../src/pki/index.js";
import { NODES_NOTICE_EVERY_MS, NodesNotice } from "../src/gateway/cluster/nodes-notice.js";
import type { ClusterChange } from "../src/gateway/cluster/cluster.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import {
  approvedNode,
  changeFeedsListening,
  createTestCluster,
  eventually,
  type ApprovedNode as Node,
  type TestCluster,
} from "./fixtures/cluster.js";
import { signReissueProof } from "./fixtures/reissue.js";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
}

/** One request over real TLS to `gateway`, trusting the shared CA. */
function request(
  gateway: RunningGateway,
  method: string,
  route: string,
  options: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const ca = gateway.ctx.tls.trustedCas().map((c) => c.certPem);
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(route, gateway.url),
      {
        method,
        ca,
        servername: "localhost",
        headers: {
          ...(options.body === undefined ? {} : { "content-type": "application/json" }),
          ...options.headers,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: Record<string, unknown> = {};
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // a page, not JSON
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json });
        });
      },
    );
    req.on("error", reject);
    req.end(options.body === undefined ? undefined : JSON.stringify(options.body));
  });
}

/** A node's answer to a re-issue challenge, as the agent makes it. */
async function reissueAnswer(node: Node, challenge: string) {
  const signature = await signReissueProof(node.keys.privateKey, node.deviceId, challenge);
  return { deviceId: node.deviceId, challenge, signature, csr: await createCsr(node.keys, node.deviceId) };
}

/** The cookie value a login reply sets (`gh_session=…; …`). */
function cookieOf(reply: Reply): string {
  const header = reply.headers["set-cookie"];
  const first = Array.isArray(header) ? header[0] : header;
  expect(first, `no cookie in ${reply.status} ${reply.text}`).toBeDefined();
  return first!.split(";")[0]!;
}

/** A login link made on `maker`, by the credential `createdBy`, redeemed through `browserAt`. */
async function login(maker: RunningGateway, browserAt: RunningGateway, createdBy: string) {
  const link = await maker.ctx.dashboard.createLink("admin", createdBy);
  const reply = await request(browserAt, "GET", `/dashboard/login?token=${link.token}`);
  expect(reply.status, reply.text).toBe(303);
  return cookieOf(reply);
}

/** A dashboard's live event stream on `gateway`: the topics it has told so far. */
function eventStream(gateway: RunningGateway, cookie: string) {
  const topics: string[] = [];
  let ready!: () => void;
  const opened = new Promise<void>((resolve) => (ready = resolve));
  const req = https.get(
    new URL("/api/v1/events", gateway.url),
    { ca: gateway.ctx.tls.trustedCas().map((c) => c.certPem), servername: "localhost", headers: { cookie } },
    (response) => {
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        if (chunk.includes("event: ready")) ready();
        for (const match of chunk.matchAll(/"topic":"(\w+)"/g)) topics.push(match[1]!);
      });
    },
  );
  req.on("error", () => undefined);
  return { topics, opened, close: () => req.destroy() };
}

const describePostgres = postgresAvailable() ? describe : describe.skip;

describePostgres("two instances behind a load balancer (one PostgreSQL database)", () => {
  let cluster: TestCluster;
  let a: RunningGateway;
  let b: RunningGateway;

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-balanced-", { a: "127.0.0.1:0", b: "127.0.0.1:0" });
    a = await cluster.start("a");
    b = await cluster.start("b");
    await changeFeedsListening(a, b);
  }, 120_000);

  afterAll(() => cluster?.close());

  it("answers a re-issue challenge issued by one instance through the other, once on either", async () => {
    const node = await approvedNode(a, "reissue-node");
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const issued = await request(a, "POST", "/api/v1/certs/challenge", { body: { deviceId: node.deviceId } });
    expect(issued.status).toBe(200);
    const answer = await reissueAnswer(node, issued.json.challenge as string);

    const reissued = await request(b, "POST", "/api/v1/certs/reissue", { body: answer });
    expect(reissued.status, reissued.text).toBe(200);
    expect(reissued.json.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);

    // The same answer replayed, through the instance that issued it and through the one that took it.
    for (const gateway of [a, b]) {
      const replay = await request(gateway, "POST", "/api/v1/certs/reissue", { body: answer });
      expect(replay.status).toBe(400);
      expect(replay.json).toMatchObject({ error: "invalid_request" });
      expect(replay.json.error_description).toMatch(/already been used/);
    }
    // A challenge altered still is not one this gateway issued, on either instance.
    const other = await request(b, "POST", "/api/v1/certs/challenge", { body: { deviceId: node.deviceId } });
    const forged = `${(other.json.challenge as string).slice(0, -2)}AA`;
    const refused = await request(a, "POST", "/api/v1/certs/reissue", {
      body: await reissueAnswer(node, forged),
    });
    expect(refused.json.error_description).toMatch(/not issued by this gateway/);
  });

  it("opens a dashboard session from a link made on one instance through the other, and ends it on both", async () => {
    const admin = a.ctx.devices
      .list()
      .find((device) => device.kind === "operator" && device.role === "admin")!;
    const cookie = await login(a, b, `device:${admin.deviceId}`);
    const seen = [];
    for (const gateway of [a, b, a]) {
      const reply = await request(gateway, "GET", "/api/v1/dashboard/session", { headers: { cookie } });
      expect(reply.status, reply.text).toBe(200);
      seen.push(reply.json.subject);
    }
    expect(new Set(seen).size).toBe(1);
    const { csrfToken } = (await request(b, "GET", "/api/v1/dashboard/session", { headers: { cookie } }))
      .json;

    // The link was spent through b: a second visit through a is told so.
    const link = await a.ctx.dashboard.createLink("admin", `device:${admin.deviceId}`);
    expect((await request(b, "GET", `/dashboard/login?token=${link.token}`)).status).toBe(303);
    const again = await request(a, "GET", `/dashboard/login?token=${link.token}`);
    expect(again.status).toBe(401);
    expect(again.text).toContain("This login link was already used.");

    // Logout through a ends the session through b too.
    const out = await request(a, "POST", "/api/v1/dashboard/logout", {
      headers: { cookie, "x-csrf-token": csrfToken as string },
    });
    expect(out.status, out.text).toBe(200);
    for (const gateway of [a, b]) {
      const ended = await request(gateway, "GET", "/api/v1/dashboard/session", { headers: { cookie } });
      expect(ended.status).toBe(401);
      expect(ended.json).toMatchObject({ error: "invalid_token" });
    }
  });

  it("ends the dashboard sessions of a credential revoked through another instance, on every instance", async () => {
    const { record } = await a.ctx.tokens.createApiKey({ name: "dash-admin", role: "admin" });
    await eventually(
      () => b.ctx.tokens.listApiKeys().some((key) => key.keyId === record.keyId),
      "b to see the key",
    );
    const cookie = await login(a, b, `key:${record.keyId}`);
    expect((await request(a, "GET", "/api/v1/dashboard/session", { headers: { cookie } })).status).toBe(200);

    await b.ctx.tokens.revokeApiKey(record.keyId, "left the team");
    for (const gateway of [b, a])
      await eventually(
        async () =>
          (await request(gateway, "GET", "/api/v1/dashboard/session", { headers: { cookie } })).status ===
          401,
        "the session to end",
      );
  });

  it("refreshes the node list of a dashboard on one instance when a node connects to the other", async () => {
    const node = await approvedNode(a, "listed-node");
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const admin = b.ctx.devices
      .list()
      .find((device) => device.kind === "operator" && device.role === "admin")!;
    const stream = eventStream(b, await login(b, b, `device:${admin.deviceId}`));
    try {
      await stream.opened;
      const socket = new WebSocket(`${a.url.replace(/^https/, "wss")}/api/v1/connect`, node.tls);
      try {
        await eventually(() => stream.topics.includes("nodes"), "b's dashboard to hear of the node");
        const cookie = await login(b, b, `device:${admin.deviceId}`);
        const nodes = await request(b, "GET", "/api/v1/nodes", { headers: { cookie } });
        expect(JSON.stringify(nodes.json)).toContain(node.deviceId);
      } finally {
        socket.close();
      }
    } finally {
      stream.close();
    }
  });
});

describe("the nodes notice to the other instances", () => {
  /** A clock and a timer queue the test moves by hand. */
  function manual() {
    let at = 1_000_000;
    const timers: { due: number; run: () => void }[] = [];
    return {
      now: () => at,
      schedule: (run: () => void, delayMs: number) => {
        const timer = { due: at + delayMs, run };
        timers.push(timer);
        return () => timers.splice(timers.indexOf(timer), 1);
      },
      advance(ms: number) {
        at += ms;
        for (const timer of timers.filter((t) => t.due <= at)) {
          timers.splice(timers.indexOf(timer), 1);
          timer.run();
        }
      },
    };
  }

  it("tells the first change at once and gathers the rest of each second into one notice", () => {
    const clock = manual();
    const sent: ClusterChange[] = [];
    const notice = new NodesNotice({ publish: (change) => sent.push(change) }, clock.now, clock.schedule);
    notice.changed();
    expect(sent).toEqual([{ kind: "nodes" }]);
    // 2,000 sessions opened within the next second: one more notice, at its end.
    for (let i = 0; i < 2000; i++) notice.changed();
    clock.advance(NODES_NOTICE_EVERY_MS - 1);
    expect(sent).toHaveLength(1);
    clock.advance(1);
    expect(sent).toHaveLength(2);
    // Quiet for a while, then one change: told at once again.
    clock.advance(5 * NODES_NOTICE_EVERY_MS);
    notice.changed();
    expect(sent).toHaveLength(3);
    // A stopping instance sends what waits at once, and nothing after.
    notice.changed();
    notice.flush();
    expect(sent).toHaveLength(4);
    clock.advance(10 * NODES_NOTICE_EVERY_MS);
    expect(sent).toHaveLength(4);
  });
});
