/**
 * The JSON body of every route that reads one (src/gateway/routes/*.ts): arbitrary JSON, junk text,
 * and bodies shaped like the route's own with junk in the fields. The answer is a success or a
 * catalogue error, and a refusal leaves the store as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import type https from "node:https";
import { bodyFor, junkString } from "./arbitraries.js";
import {
  expectSuccessOrCatalogue,
  registerApprovedNode,
  runs,
  startHostileGateway,
  watchSession,
  type HostileGateway,
  type RegisteredNode,
} from "./harness.js";
import { createCsr, generateKeyPair } from "../../src/pki/index.js";

let gateway: HostileGateway;
let watcher: Awaited<ReturnType<typeof watchSession>>;
let node: RegisteredNode;
let nodeAgent: https.Agent;
let pendingId: string;
let denyId: string;
let revokeId: string;
let keyId: string;
let validCsr: string;

async function pendingDevice(name: string): Promise<string> {
  const csr = await createCsr(await generateKeyPair(), name);
  const reply = await gateway.call({ path: "/api/v1/enroll", body: JSON.stringify({ csr, name }) });
  return (reply.json as { deviceId: string }).deviceId;
}

beforeAll(async () => {
  gateway = await startHostileGateway();
  watcher = await watchSession(gateway, "bodies-watcher");
  node = await registerApprovedNode(gateway, "bodies-node");
  nodeAgent = gateway.agentFor(node);
  pendingId = await pendingDevice("bodies-pending");
  denyId = await pendingDevice("bodies-deny");
  revokeId = (await registerApprovedNode(gateway, "bodies-revoke")).deviceId;
  const key = await gateway.adminCall({
    path: "/api/v1/keys",
    body: JSON.stringify({ name: "bodies-key", role: "node" }),
  });
  keyId = (key.json as { key: { keyId: string } }).key.keyId;
  validCsr = await createCsr(await generateKeyPair(), "bodies-csr");
});

afterAll(async () => {
  watcher?.close();
  await gateway?.close();
});

interface BodyRoute {
  route: string;
  path: () => string;
  who: "anonymous" | "admin" | "node";
  body: () => fc.Arbitrary<string>;
  contentType?: string;
}

const durations = fc.constantFrom("1h", "24h", "30d", "1s", "0s", "-5m", "365000d", "1.5h", "h", "");
const roles = fc.constantFrom("node", "viewer", "operator", "admin", "root", "Admin", "");

const ROUTES: BodyRoute[] = [
  {
    route: "POST /api/v1/auth/token (JSON)",
    path: () => "/api/v1/auth/token",
    who: "anonymous",
    body: () =>
      bodyFor(["grant_type", "client_id", "client_secret", "refresh_token"], {
        grant_type: fc.constantFrom("client_credentials", "refresh_token", "password"),
        client_secret: fc.constantFrom("ghk_", "ghk_x_y", "gh_live_abc"),
      }),
  },
  {
    route: "POST /api/v1/auth/token (form)",
    path: () => "/api/v1/auth/token",
    who: "anonymous",
    contentType: "application/x-www-form-urlencoded",
    body: () =>
      fc.oneof(
        fc
          .dictionary(
            fc.constantFrom("grant_type", "client_secret", "refresh_token", "client_id", "x"),
            fc.oneof(junkString(40), fc.constantFrom("client_credentials", "refresh_token")),
          )
          .map((fields) => new URLSearchParams(fields).toString()),
        fc.string({ maxLength: 200 }),
        fc.constantFrom(
          "%",
          "grant_type=%zz",
          "a=%c0%80&&&==",
          "grant_type=client_credentials&client_secret=%",
        ),
      ),
  },
  {
    route: "POST /api/v1/certs/renew",
    path: () => "/api/v1/certs/renew",
    who: "node",
    body: () => bodyFor(["csr"], { csr: fc.constant(validCsr) }),
  },
  {
    route: "POST /api/v1/certs/challenge",
    path: () => "/api/v1/certs/challenge",
    who: "anonymous",
    body: () => bodyFor(["deviceId"], { deviceId: fc.constantFrom(node.deviceId, pendingId, "dev_x") }),
  },
  {
    route: "POST /api/v1/certs/reissue",
    path: () => "/api/v1/certs/reissue",
    who: "anonymous",
    body: () =>
      bodyFor(["deviceId", "challenge", "signature", "csr"], {
        deviceId: fc.constant(node.deviceId),
        csr: fc.constant(validCsr),
        signature: fc.base64String({ maxLength: 120 }),
      }),
  },
  {
    route: "POST /api/v1/ca/rotate",
    path: () => "/api/v1/ca/rotate",
    who: "admin",
    body: () => bodyFor(["overlap"], { overlap: durations }),
  },
  {
    route: "POST /api/v1/devices/:id/approve",
    path: () => `/api/v1/devices/${pendingId}/approve`,
    who: "admin",
    body: () => bodyFor(["role"], { role: roles }),
  },
  {
    route: "POST /api/v1/devices/:id/deny",
    path: () => `/api/v1/devices/${denyId}/deny`,
    who: "admin",
    body: () => bodyFor(["reason"]),
  },
  {
    route: "POST /api/v1/devices/:id/revoke",
    path: () => `/api/v1/devices/${revokeId}/revoke`,
    who: "admin",
    body: () => bodyFor(["reason"]),
  },
  {
    route: "POST /api/v1/enroll-tokens",
    path: () => "/api/v1/enroll-tokens",
    who: "admin",
    body: () =>
      bodyFor(["name", "role", "uses", "expires", "namePrefix", "legacySecret"], {
        role: roles,
        expires: durations,
        uses: fc.integer({ min: -2, max: 20_000 }),
      }),
  },
  {
    route: "POST /api/v1/enroll",
    path: () => "/api/v1/enroll",
    who: "anonymous",
    body: () =>
      bodyFor(["csr", "name", "platform", "enrollToken"], {
        csr: fc.constant(validCsr),
        name: fc.constantFrom("ok-name", "bodies-node"),
      }),
  },
  {
    route: "POST /api/v1/keys",
    path: () => "/api/v1/keys",
    who: "admin",
    body: () => bodyFor(["name", "role", "expires"], { role: roles, expires: durations }),
  },
  {
    route: "POST /api/v1/keys/:id/revoke",
    path: () => `/api/v1/keys/${keyId}/revoke`,
    who: "admin",
    body: () => bodyFor(["reason"]),
  },
  {
    route: "POST /api/v1/keys/:id/rotate",
    path: () => `/api/v1/keys/${keyId}/rotate`,
    who: "admin",
    body: () => bodyFor(["grace"], { grace: durations }),
  },
  {
    route: "POST /api/v1/nodes/:id/exec",
    path: () => "/api/v1/nodes/no-such-node/exec",
    who: "admin",
    body: () =>
      bodyFor(["command", "args", "timeoutMs"], {
        command: fc.constantFrom("status", "sh", ""),
        args: fc.array(junkString(20), { maxLength: 70 }),
        timeoutMs: fc.integer({ min: -1, max: 10_000_000 }),
      }),
  },
];

describe("hostile JSON bodies", () => {
  for (const route of ROUTES) {
    it(`${route.route}: a success or a catalogue error; a refusal changes nothing stored`, async () => {
      const agent = () =>
        route.who === "admin"
          ? gateway.adminAgent
          : route.who === "node"
            ? nodeAgent
            : gateway.anonymousAgent;
      await fc.assert(
        fc.asyncProperty(route.body(), async (body) => {
          const before = await gateway.snapshot();
          const reply = await gateway.call({
            path: route.path(),
            body,
            agent: agent(),
            ...(route.contentType ? { headers: { "content-type": route.contentType } } : {}),
          });
          expectSuccessOrCatalogue(reply, `${route.route} ${JSON.stringify(body.slice(0, 200))}`);
          if (reply.status >= 400)
            expect(await gateway.snapshot(), "stored state after a refusal").toBe(before);
        }),
        runs(100),
      );
    });
  }

  it("after the run: a node session opened before it is still up and answering", async () => {
    await watcher.expectStillUp();
  });
});
