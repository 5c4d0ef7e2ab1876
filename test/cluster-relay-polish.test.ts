/**
 * What the relay route tells whoever it refuses, and a relay token captured before its holder
 * restarted (src/gateway/routes/cluster.ts, cluster/relay-token.ts). A real HTTPS server on
 * loopback with a certificate from a test CA plays the holding instance, answering errors as the
 * gateway's app does; which instances are alive is a fake, as the instances table would say.
 * Clocks are fixed; nothing sleeps.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import https from "node:https";
import { pino } from "pino";
import { signAccessToken, verifyAccessToken } from "../src/auth/jwt.js";
import { ExecRelay, RELAY_EXEC_PATH } from "../src/gateway/cluster/exec-relay.js";
import { mintRelayToken, relayBodyHash, relayRefusalHint } from "../src/gateway/cluster/relay-token.js";
import { ERROR_CATALOGUE, GatehouseError } from "../src/protocol/errors.js";
import type { GatewayContext } from "../src/gateway/context.js";
import type { ExecResponse } from "../src/protocol/messages.js";
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
const FIRST_RUN = "2026-03-01T11:59:50.000Z";
const SECOND_RUN = "2026-03-01T11:59:58.000Z";

const operator = RELAY_OPERATOR;
const answer: ExecResponse = {
  execId: "exe_1",
  deviceId: "dev_x",
  command: "uptime",
  args: [],
  outcome: "completed",
  exitCode: 0,
  signal: null,
  stdout: "up\n",
  stderr: "",
  durationMs: 3,
  truncated: false,
};
const body = { deviceId: "dev_x", command: "uptime", args: [], timeoutMs: 5000 };
const text = JSON.stringify(body);

const signingKey = await relaySigningKey("sk_shared");
const ring = await ringOf(signingKey);
// Certificates are judged by TLS against the machine's clock; tokens by the injected one.
const holderTls = await relayHolderTls("relay test CA");
const ca = holderTls.ca;

const record = (instanceId: string, url: string, startedAt: string) =>
  instanceAt(instanceId, url, startedAt, NOW.toISOString());

/**
 * One run of the holding instance: its own relay (spent token ids in its memory) and routes,
 * started at `startedAt` on `port` (0: any). What its broker is asked to run is counted, and the
 * authorization headers it received are kept (what someone on the path could have captured).
 */
async function startHolder(
  startedAt: string,
  port = 0,
  does: () => Promise<ExecResponse> = async () => answer,
) {
  const runs: string[] = [];
  const captured: string[] = [];
  let url = "";
  const relay = new ExecRelay({
    store: { listOpenSessions: async () => [], listInstances: async () => [record(HOLDER, url, startedAt)] },
    cluster: { instanceId: HOLDER, liveInstances: () => [record(HOLDER, url, startedAt)] },
    signer: () => signingKey,
    caPems: () => [ca.certPem],
    now,
    logger,
  });
  const ctx = {
    relay,
    signingKeys: { ring },
    now,
    exec: {
      run: async (_principal: unknown, deviceId: string) => {
        runs.push(deviceId);
        return does();
      },
    },
  } as unknown as GatewayContext;
  const started = await startRelayHolder(holderTls, ctx, {
    port,
    prepare: (app) =>
      app.addHook("onRequest", async (request) => {
        if (request.headers.authorization) captured.push(request.headers.authorization);
      }),
  });
  const app = started.app;
  url = started.url;
  return {
    url,
    port: new URL(url).port,
    runs,
    captured,
    instance: record(HOLDER, url, startedAt),
    close: async () => {
      relay.close();
      await app.close();
    },
  };
}
type Holder = Awaited<ReturnType<typeof startHolder>>;

/** POSTs to a holder's relay route; returns status and JSON body. */
function post(
  url: string,
  payload: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: { error?: string; error_description?: string; hint?: string } }> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      new URL(RELAY_EXEC_PATH, url),
      {
        method: "POST",
        ca: ca.certPem,
        agent: false,
        headers: { "content-type": "application/json", ...headers },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    request.on("error", reject);
    request.end(payload);
  });
}

const tokenFor = (
  holder: Holder,
  payload = text,
  overrides: Partial<Parameters<typeof mintRelayToken>[0]> = {},
) =>
  mintRelayToken({
    signer: signingKey,
    from: SENDER,
    to: holder.instance,
    principal: operator,
    bodySha256: relayBodyHash(payload),
    now: NOW,
    ...overrides,
  });

/** The hints of the catalogue meant for operators' tokens and CSRs, which a relay must not get. */
const OPERATOR_HINTS = [
  ERROR_CATALOGUE.invalid_token.hint,
  ERROR_CATALOGUE.token_expired.hint,
  ERROR_CATALOGUE.wrong_audience.hint,
  ERROR_CATALOGUE.unknown_key.hint,
  ERROR_CATALOGUE.payload_too_large.hint,
  ERROR_CATALOGUE.invalid_request.hint,
  ERROR_CATALOGUE.insufficient_scope.hint,
];

describe("every refusal on the relay route", () => {
  let holder: Holder;
  beforeAll(async () => {
    holder = await startHolder(FIRST_RUN);
  });
  afterAll(async () => holder?.close());
  beforeEach(() => {
    holder.runs.length = 0;
  });

  const refusals: [string, () => Promise<{ payload: string; headers: Record<string, string> }>, string][] = [
    ["no credential", async () => ({ payload: text, headers: {} }), "missing_credentials"],
    [
      "an operator's access token",
      async () => ({
        payload: text,
        headers: {
          authorization: `Bearer ${await signAccessToken({
            key: signingKey,
            issuer: "gw_1",
            audience: "gw_1",
            subject: "key:k_ops",
            scope: "node:execute",
            now: NOW,
            ttlSeconds: 300,
            jti: "a1",
          })}`,
        },
      }),
      "invalid_token",
    ],
    [
      "an expired relay token",
      async () => ({
        payload: text,
        headers: {
          authorization: `Bearer ${await tokenFor(holder, text, { now: new Date(NOW.getTime() - 600_000) })}`,
        },
      }),
      "token_expired",
    ],
    [
      "a relay token for another instance",
      async () => ({
        payload: text,
        headers: {
          authorization: `Bearer ${await tokenFor(holder, text, { to: { instanceId: "gi_cccccccccccccccc", startedAt: FIRST_RUN } })}`,
        },
      }),
      "wrong_audience",
    ],
    [
      "a body other than the token's",
      async () => ({
        payload: JSON.stringify({ ...body, command: "rm" }),
        headers: { authorization: `Bearer ${await tokenFor(holder)}` },
      }),
      "invalid_token",
    ],
    [
      "a body larger than the route takes",
      async () => {
        const big = JSON.stringify({ ...body, args: ["x".repeat(400 * 1024)] });
        return { payload: big, headers: { authorization: `Bearer ${await tokenFor(holder, big)}` } };
      },
      "payload_too_large",
    ],
    [
      "a body that is not JSON",
      async () => ({
        payload: "not json",
        headers: { authorization: `Bearer ${await tokenFor(holder, "not json")}` },
      }),
      "invalid_request",
    ],
    [
      "an operator without node:execute",
      async () => ({
        payload: text,
        headers: {
          authorization: `Bearer ${await tokenFor(holder, text, {
            principal: { ...operator, role: "viewer", scopes: ["node:status"] },
          })}`,
        },
      }),
      "insufficient_scope",
    ],
  ];

  it.each(refusals)(
    "%s: its code, with the relay's own hint, and nothing runs",
    async (_what, make, code) => {
      const { payload, headers } = await make();
      const answered = await post(holder.url, payload, headers);
      expect(answered.body.error).toBe(code);
      expect(answered.body.hint).toBe(relayRefusalHint(code));
      expect(OPERATOR_HINTS).not.toContain(answered.body.hint);
      expect(holder.runs).toHaveLength(0);
    },
  );

  it("a replayed relay token: used already, with the relay's hint; the command ran once", async () => {
    const token = await tokenFor(holder);
    expect((await post(holder.url, text, { authorization: `Bearer ${token}` })).status).toBe(200);
    const again = await post(holder.url, text, { authorization: `Bearer ${token}` });
    expect(again.body).toMatchObject({ error: "invalid_token", hint: relayRefusalHint("invalid_token") });
    expect(again.body.error_description).toContain("used already");
    expect(holder.runs).toHaveLength(1);
  });

  it("an access token says its typ header parameter is at+jwt, not that a claim is invalid", async () => {
    const access = await signAccessToken({
      key: signingKey,
      issuer: "gw_1",
      audience: "gw_1",
      subject: "key:k_ops",
      scope: "node:execute",
      now: NOW,
      ttlSeconds: 300,
      jti: "a2",
    });
    const answered = await post(holder.url, text, { authorization: `Bearer ${access}` });
    expect(answered.body.error_description).toBe(
      'the relay token\'s typ header parameter is "at+jwt" (an access token), not "gatehouse-relay+jwt"',
    );
  });

  it("clock refusals name the instances' clocks", () => {
    expect(relayRefusalHint("token_expired")).toContain("clocks");
    expect(relayRefusalHint("token_not_yet_valid")).toContain("clocks");
  });
});

describe("a relay token presented as an access token", () => {
  it("is refused naming its typ header parameter", async () => {
    const relayToken = await mintRelayToken({
      signer: signingKey,
      from: SENDER,
      to: { instanceId: HOLDER, startedAt: FIRST_RUN },
      principal: operator,
      bodySha256: relayBodyHash(text),
      now: NOW,
    });
    const refused = await verifyAccessToken(relayToken, {
      ring,
      issuer: SENDER,
      audience: `gatehouse-instance:${HOLDER}@${FIRST_RUN}`,
      now: NOW,
    }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GatehouseError);
    expect(refused).toMatchObject({
      code: "invalid_token",
      message: 'the token\'s typ header parameter is "gatehouse-relay+jwt", not "at+jwt"',
    });
  });
});

describe("the command's own answer through the relay route", () => {
  it("keeps its hint: it is the operator's, passed back by the sender", async () => {
    const holder = await startHolder(FIRST_RUN, 0, async () => {
      throw new GatehouseError(
        "command_not_allowed",
        "the node refused the command",
        "Add it to exec.allow.",
      );
    });
    try {
      const answered = await post(holder.url, text, { authorization: `Bearer ${await tokenFor(holder)}` });
      expect(answered).toMatchObject({
        status: 403,
        body: { error: "command_not_allowed", hint: "Add it to exec.allow." },
      });
    } finally {
      await holder.close();
    }
  });
});

describe("a relay token captured before the holder restarted", () => {
  it("is refused by the holder's next run, within the token's life, and runs nothing there", async () => {
    const first = await startHolder(FIRST_RUN);
    const sender = new ExecRelay({
      store: { listOpenSessions: async () => [], listInstances: async () => [first.instance] },
      cluster: {
        instanceId: SENDER,
        liveInstances: () => [record(SENDER, "https://127.0.0.1:1", FIRST_RUN), first.instance],
      },
      signer: () => signingKey,
      caPems: () => [ca.certPem],
      now,
      logger,
    });
    const session = heldSession("s_x", "dev_x", HOLDER, NOW.toISOString());
    // The sender relays one command to the first run: it runs, and its token is seen on the wire.
    await expect(sender.send({ session, instance: first.instance }, operator, body)).resolves.toEqual(answer);
    sender.close();
    const captured = first.captured.at(-1)!;
    expect(first.runs).toEqual(["dev_x"]);
    // The holder restarts on the same address (a new process: no memory of spent tokens) and the
    // captured request is replayed at once, the token still within its 30 s.
    await first.close();
    const second = await startHolder(SECOND_RUN, Number(first.port));
    try {
      const replayed = await post(second.url, text, { authorization: captured });
      expect(replayed.status).toBe(401);
      expect(replayed.body).toMatchObject({
        error: "wrong_audience",
        hint: relayRefusalHint("wrong_audience"),
      });
      expect(replayed.body.error_description).toContain("earlier run of this instance");
      expect(second.runs).toHaveLength(0);
      // A token made for the new run is taken.
      const fresh = await tokenFor(second);
      expect((await post(second.url, text, { authorization: `Bearer ${fresh}` })).status).toBe(200);
      expect(second.runs).toEqual(["dev_x"]);
    } finally {
      await second.close();
    }
  });

  it("a command relayed before this instance read the holder's new run is sent again for it, and runs once", async () => {
    const first = await startHolder(FIRST_RUN);
    const firstRun = first.instance;
    await first.close();
    const second = await startHolder(SECOND_RUN, Number(first.port));
    // The heartbeat's list still has the first run; the instances table already has the second.
    const sender = new ExecRelay({
      store: { listOpenSessions: async () => [], listInstances: async () => [second.instance] },
      cluster: { instanceId: SENDER, liveInstances: () => [firstRun] },
      signer: () => signingKey,
      caPems: () => [ca.certPem],
      now,
      logger,
    });
    const session = heldSession("s_x2", "dev_x", HOLDER, NOW.toISOString());
    try {
      await expect(sender.send({ session, instance: firstRun }, operator, body)).resolves.toEqual(answer);
      expect(second.runs).toEqual(["dev_x"]);
    } finally {
      sender.close();
      await second.close();
    }
  });
});
