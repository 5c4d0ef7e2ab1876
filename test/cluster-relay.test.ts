/**
 * The exec relay between instances (src/gateway/cluster/exec-relay.ts, routes/cluster.ts): a real
 * HTTPS server on loopback with a certificate from a test CA plays the holding instance; the
 * cluster (which instances are alive) and the shared sessions table are fakes, as the other
 * instance would be. What an operator notices: the holder's answer or error comes back as is; a
 * holder that cannot be reached is `node_offline` with what to do; the relay route takes nothing
 * but a fresh relay token for the exact body, and runs nothing when it refuses.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import https from "node:https";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { createCertificateAuthority } from "../src/pki/authority.js";
import { signAccessToken } from "../src/auth/jwt.js";
import { ExecRelay, RELAY_EXEC_PATH, type RelayCluster } from "../src/gateway/cluster/exec-relay.js";
import { mintRelayToken, relayBodyHash, type RelayedPrincipal } from "../src/gateway/cluster/relay-token.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { ExecBroker } from "../src/gateway/exec.js";
import { SessionRegistry } from "../src/gateway/sessions.js";
import type { GatewayContext } from "../src/gateway/context.js";
import type { Principal } from "../src/auth/roles.js";
import type { ExecResponse } from "../src/protocol/messages.js";
import type { InstanceRecord, SessionRecord } from "../src/store/types.js";
import {
  heldSession,
  instanceAt,
  RELAY_OPERATOR,
  relayHolderTls,
  relaySigningKey,
  ringOf,
  startRelayHolder,
} from "./fixtures/relay.js";

const NOW = new Date("2026-03-01T12:00:00Z");
const now = () => NOW;
const logger = pino({ level: "silent" });
const SENDER = "gi_aaaaaaaaaaaaaaaa";
const HOLDER = "gi_bbbbbbbbbbbbbbbb";
const STALE = "gi_cccccccccccccccc";

const operator = RELAY_OPERATOR;
const answer: ExecResponse = {
  execId: "exe_1",
  deviceId: "dev_x",
  command: "uptime",
  args: ["-p"],
  outcome: "completed",
  exitCode: 0,
  signal: null,
  stdout: "up 3 days\n",
  stderr: "",
  durationMs: 12,
  truncated: false,
};

const instance = (instanceId: string, url: string) => instanceAt(instanceId, url, NOW.toISOString());
const sessionRow = (deviceId: string, instanceId: string, connectedAt: string, sessionId: string) =>
  heldSession(sessionId, deviceId, instanceId, connectedAt);

const signingKey = await relaySigningKey("sk_shared");
const ring = await ringOf(signingKey);
// Certificates are judged by TLS against the machine's clock; tokens by the injected one.
const holderTls = await relayHolderTls("relay test CA");
const ca = holderTls.ca;
const otherCa = await createCertificateAuthority({
  commonName: "another gateway",
  now: new Date(),
  validityDays: 1,
});

/** What the holder's ExecBroker was asked to run, and what it does about it. */
let runs: { principal: Principal; deviceId: string; command: string; args: string[]; via?: string }[] = [];
let holderDoes: () => Promise<ExecResponse> = async () => answer;

let app: FastifyInstance;
let holderUrl = "";
let rows: SessionRecord[] = [];
let live: InstanceRecord[] = [];
const holderRelay = new ExecRelay({
  store: { listOpenSessions: async () => rows, listInstances: async () => live },
  cluster: { instanceId: HOLDER, liveInstances: () => live },
  signer: () => signingKey,
  caPems: () => [ca.certPem],
  now,
  logger,
});

function senderRelay(cas = [ca.certPem]): ExecRelay {
  const cluster: RelayCluster = { instanceId: SENDER, liveInstances: () => live };
  return new ExecRelay({
    store: { listOpenSessions: async () => rows, listInstances: async () => live },
    cluster,
    signer: () => signingKey,
    caPems: () => cas,
    now,
    logger,
  });
}

beforeAll(async () => {
  const ctx = {
    relay: holderRelay,
    signingKeys: { ring },
    now,
    exec: {
      run: async (
        principal: Principal,
        deviceId: string,
        command: string,
        args: string[],
        _timeoutMs: number,
        options: { via?: string },
      ) => {
        runs.push({ principal, deviceId, command, args, via: options.via });
        return holderDoes();
      },
    },
  } as unknown as GatewayContext;
  ({ app, url: holderUrl } = await startRelayHolder(holderTls, ctx));
});

afterAll(async () => {
  holderRelay.close();
  await app?.close();
});

beforeEach(() => {
  runs = [];
  holderDoes = async () => answer;
  live = [instance(SENDER, "https://127.0.0.1:1"), instance(HOLDER, holderUrl)];
  rows = [sessionRow("dev_x", HOLDER, "2026-03-01T11:00:00.000Z", "s_x")];
});

const body = { deviceId: "dev_x", command: "uptime", args: ["-p"], timeoutMs: 5000 };

/** POSTs to the holder's relay route with the given headers and body text; returns status and JSON. */
function post(text: string, headers: Record<string, string>): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      new URL(RELAY_EXEC_PATH, holderUrl),
      { method: "POST", ca: ca.certPem, headers: { "content-type": "application/json", ...headers } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    request.on("error", reject);
    request.end(text);
  });
}

const tokenFor = (text: string, overrides: Partial<Parameters<typeof mintRelayToken>[0]> = {}) =>
  mintRelayToken({
    signer: signingKey,
    from: SENDER,
    to: instance(HOLDER, holderUrl),
    principal: operator,
    bodySha256: relayBodyHash(text),
    now: NOW,
    ...overrides,
  });

describe("a command relayed to the instance holding the node", () => {
  it("runs there for the operator, via the sender, and its answer comes back as is", async () => {
    const sender = senderRelay();
    const holder = await sender.locate("dev_x");
    expect(holder?.instance.instanceId).toBe(HOLDER);
    await expect(sender.send(holder!, operator, body)).resolves.toEqual(answer);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ deviceId: "dev_x", command: "uptime", args: ["-p"], via: SENDER });
    expect(runs[0]!.principal).toMatchObject({
      subject: "key:k_ops",
      role: "operator",
      kind: "access_token",
    });
    sender.close();
  });

  it("gives the holder's own error (code, description, hint) as a direct exec would", async () => {
    holderDoes = async () => {
      throw new GatehouseError(
        "command_not_allowed",
        'the node refused the command: the node says "no"',
        "Add it.",
      );
    };
    const sender = senderRelay();
    const error = await sender.send((await sender.locate("dev_x"))!, operator, body).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatehouseError);
    expect(error).toMatchObject({
      code: "command_not_allowed",
      status: 403,
      message: 'the node refused the command: the node says "no"',
      hint: "Add it.",
    });
    sender.close();
  });

  it("is node_offline, saying the node will reconnect, when the holder does not answer", async () => {
    // A port nothing listens on: the holder died between its last heartbeat and now.
    live = [instance(SENDER, "https://127.0.0.1:1"), instance(HOLDER, "https://127.0.0.1:1")];
    const sender = senderRelay();
    const error = await sender.send((await sender.locate("dev_x"))!, operator, body).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "node_offline", status: 409 });
    expect((error as GatehouseError).message).toContain(HOLDER);
    expect((error as GatehouseError).message).toContain("the command was not sent");
    expect((error as GatehouseError).hint).toContain("reconnects to a live instance");
    expect(runs).toHaveLength(0);
    sender.close();
  });

  it("is node_offline when the holder's certificate is not from this gateway's CA", async () => {
    const sender = senderRelay([otherCa.certPem]);
    const error = await sender.send((await sender.locate("dev_x"))!, operator, body).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "node_offline" });
    expect(runs).toHaveLength(0);
    sender.close();
  });
});

describe("where a node is, among the instances", () => {
  it("is never an instance whose heartbeat went stale, nor this one", async () => {
    rows = [
      sessionRow("dev_x", HOLDER, "2026-03-01T11:00:00.000Z", "s_x"),
      sessionRow("dev_y", STALE, "2026-03-01T11:30:00.000Z", "s_y_dead"),
      sessionRow("dev_z", SENDER, "2026-03-01T11:40:00.000Z", "s_z_mine"),
    ];
    const sender = senderRelay();
    expect((await sender.remoteSessions()).map((held) => held.session.sessionId)).toEqual(["s_x"]);
    expect(await sender.locate("dev_y")).toBeUndefined();
    expect(await sender.locate("dev_z")).toBeUndefined();
    sender.close();
  });

  it("is the newest session when the node is on two live instances", async () => {
    const third = "gi_dddddddddddddddd";
    live.push(instance(third, "https://127.0.0.1:2"));
    rows = [
      sessionRow("dev_x", third, "2026-03-01T11:50:00.000Z", "s_new"),
      sessionRow("dev_x", HOLDER, "2026-03-01T11:00:00.000Z", "s_old"),
    ];
    const sender = senderRelay();
    expect((await sender.locate("dev_x"))?.session.sessionId).toBe("s_new");
    sender.close();
  });
});

describe("the reads of the shared sessions table", () => {
  function counted() {
    let clock = NOW.getTime();
    const reads = { count: 0 };
    const relay = new ExecRelay({
      store: {
        listOpenSessions: async () => {
          reads.count++;
          return [...rows];
        },
        listInstances: async () => live,
      },
      cluster: { instanceId: SENDER, liveInstances: () => live },
      signer: () => signingKey,
      caPems: () => [ca.certPem],
      now: () => new Date(clock),
      logger,
    });
    return { relay, reads, advance: (ms: number) => (clock += ms) };
  }

  it("are shared by a burst of relayed commands", async () => {
    const { relay, reads } = counted();
    const found = await Promise.all(Array.from({ length: 20 }, () => relay.locate("dev_x")));
    expect(found.every((held) => held?.session.sessionId === "s_x")).toBe(true);
    expect(reads.count).toBe(1);
  });

  it("serve for a second at most, and never hide a node that just connected", async () => {
    const { relay, reads, advance } = counted();
    await relay.locate("dev_x");
    await relay.locate("dev_x");
    expect(reads.count).toBe(1);
    // A node that connected to the holder after the read: looked up afresh, found.
    rows.push(sessionRow("dev_new", HOLDER, "2026-03-01T11:59:00.000Z", "s_new"));
    expect((await relay.locate("dev_new"))?.session.sessionId).toBe("s_new");
    expect(reads.count).toBe(2);
    // The node moved to another instance: after a second, the old read no longer answers.
    rows = [sessionRow("dev_x", SENDER, "2026-03-01T11:59:30.000Z", "s_x_here")];
    advance(1001);
    expect(await relay.locate("dev_x")).toBeUndefined();
    expect(reads.count).toBe(3);
    relay.close();
  });

  it("are made afresh for nodes list", async () => {
    const { relay, reads } = counted();
    await relay.locate("dev_x");
    await relay.remoteSessions();
    expect(reads.count).toBe(2);
    relay.close();
  });
});

describe("a relay token's id", () => {
  it("is taken once, and forgotten only once the token has expired", () => {
    let clock = NOW.getTime();
    const relay = new ExecRelay({
      store: { listOpenSessions: async () => [], listInstances: async () => [] },
      cluster: { instanceId: HOLDER, liveInstances: () => [] },
      signer: () => signingKey,
      caPems: () => [ca.certPem],
      now: () => new Date(clock),
      logger,
    });
    const expires = clock + 30_000;
    expect(relay.takeOnce("j1", expires)).toBe(true);
    expect(relay.takeOnce("j2", expires + 1000)).toBe(true);
    expect(relay.takeOnce("j1", expires)).toBe(false);
    // Still refused within the clock leeway after its expiry, when the token itself might pass.
    clock = expires + 59_000;
    expect(relay.takeOnce("j1", expires)).toBe(false);
    clock = expires + 61_000;
    expect(relay.takeOnce("j1", expires)).toBe(true);
    expect(relay.takeOnce("j2", expires + 1000)).toBe(false);
  });
});

describe("the relay route refuses, and runs nothing, for", () => {
  const text = JSON.stringify(body);
  it("no credential at all (a node's certificate, a dashboard cookie): 401 missing_credentials", async () => {
    const answer = await post(text, {});
    expect(answer).toMatchObject({ status: 401, body: { error: "missing_credentials" } });
    expect(runs).toHaveLength(0);
  });

  it("an operator's access token, even one naming this instance as audience: 401", async () => {
    const access = await signAccessToken({
      key: signingKey,
      issuer: "gw_1",
      audience: `gatehouse-instance:${HOLDER}`,
      subject: "key:k_ops",
      scope: "node:execute",
      now: NOW,
      ttlSeconds: 300,
      jti: "a1",
    });
    const answer = await post(text, { authorization: `Bearer ${access}` });
    expect(answer).toMatchObject({ status: 401, body: { error: "invalid_token" } });
    expect(runs).toHaveLength(0);
  });

  it("a relay token for another instance: 401 wrong_audience", async () => {
    const token = await tokenFor(text, { to: instance(STALE, holderUrl) });
    const answer = await post(text, { authorization: `Bearer ${token}` });
    expect(answer).toMatchObject({ status: 401, body: { error: "wrong_audience" } });
    expect(runs).toHaveLength(0);
  });

  it("a body other than the one the token was signed for: 401 invalid_token", async () => {
    const token = await tokenFor(text);
    const other = JSON.stringify({ ...body, command: "rm", args: ["-rf", "/"] });
    const answer = await post(other, { authorization: `Bearer ${token}` });
    expect(answer).toMatchObject({ status: 401, body: { error: "invalid_token" } });
    expect(runs).toHaveLength(0);
  });

  it("a token used a second time: 401 invalid_token, the command ran once", async () => {
    const token = await tokenFor(text);
    expect((await post(text, { authorization: `Bearer ${token}` })).status).toBe(200);
    const again = await post(text, { authorization: `Bearer ${token}` });
    expect(again).toMatchObject({ status: 401, body: { error: "invalid_token" } });
    expect(runs).toHaveLength(1);
  });

  it("an operator without node:execute: 403 insufficient_scope", async () => {
    const viewer = {
      ...operator,
      role: "viewer",
      scopes: ["node:status", "devices:read"] as RelayedPrincipal["scopes"],
    };
    const token = await tokenFor(text, { principal: viewer });
    const answer = await post(text, { authorization: `Bearer ${token}` });
    expect(answer).toMatchObject({ status: 403, body: { error: "insufficient_scope" } });
    expect(runs).toHaveLength(0);
  });
});

describe("the exec broker", () => {
  const principal = { ...operator } as Principal;
  function brokerWith(relay: Partial<ExecRelay> | undefined) {
    const ctx = {
      devices: {
        resolveNode: (id: string) =>
          id === "dev_x" || id === "laptop" ? { deviceId: "dev_x", name: "laptop", kind: "node" } : undefined,
      },
      tokens: { listApiKeys: () => [] },
      sessions: new SessionRegistry(),
      relay,
      logger,
      now,
    } as unknown as GatewayContext;
    return new ExecBroker(ctx);
  }

  it("relays a node another instance holds, named by its name, with its device id", async () => {
    const sent: unknown[] = [];
    const relay = {
      locate: async (deviceId: string) =>
        deviceId === "dev_x" ? { session: rows[0]!, instance: live[1]! } : undefined,
      send: async (_holder: unknown, _principal: unknown, request: unknown) => {
        sent.push(request);
        return answer;
      },
    };
    await expect(brokerWith(relay).run(principal, "laptop", "uptime", ["-p"], 5000)).resolves.toEqual(answer);
    expect(sent).toEqual([{ deviceId: "dev_x", command: "uptime", args: ["-p"], timeoutMs: 5000 }]);
  });

  it("never relays a relayed command again, and alone says node_offline as it always did", async () => {
    const relay = {
      locate: async () => {
        throw new Error("asked the sessions table");
      },
    };
    await expect(
      brokerWith(relay).run(principal, "dev_x", "uptime", [], 5000, { via: SENDER }),
    ).rejects.toMatchObject({ code: "node_offline", message: "node dev_x (laptop) is not connected" });
    await expect(brokerWith(undefined).run(principal, "dev_x", "uptime", [], 5000)).rejects.toMatchObject({
      code: "node_offline",
      message: "node dev_x (laptop) is not connected",
    });
  });

  it("says node_offline when no live instance holds the node either", async () => {
    const relay = { locate: async () => undefined };
    await expect(brokerWith(relay).run(principal, "laptop", "uptime", [], 5000)).rejects.toMatchObject({
      code: "node_offline",
    });
    await expect(brokerWith(relay).run(principal, "nobody", "uptime", [], 5000)).rejects.toMatchObject({
      code: "node_not_found",
    });
  });
});
