/**
 * CSRs as the network sends them (POST /api/v1/enroll and /api/v1/certs/renew): junk text, PEM
 * armour around junk, a valid CSR's DER with bytes flipped, cut, inserted or dropped, other PEM
 * labels, raw base64 DER without armour. The answer is a catalogue error (or, for a mutation the
 * parser still reads as a valid CSR, a success); a refusal leaves the store as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import type https from "node:https";
import { junkString, mutateBytes, pem } from "./arbitraries.js";
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
let csrDer: Buffer;
let nodeCsrDer: Buffer;

function derOf(pemText: string): Buffer {
  return Buffer.from(pemText.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}

beforeAll(async () => {
  gateway = await startHostileGateway();
  watcher = await watchSession(gateway, "csr-watcher");
  node = await registerApprovedNode(gateway, "csr-node");
  nodeAgent = gateway.agentFor(node);
  csrDer = derOf(await createCsr(await generateKeyPair(), "csr-fresh"));
  nodeCsrDer = derOf(await createCsr(node.keys, "csr-node"));
});

afterAll(async () => {
  watcher?.close();
  await gateway?.close();
});

/** Hostile CSR texts built around one valid CSR's DER. */
function hostileCsr(der: () => Buffer): fc.Arbitrary<string> {
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .constant(null)
        .chain(() => mutateBytes(der()))
        .map((d) => pem("CERTIFICATE REQUEST", d)),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((d) => pem("CERTIFICATE REQUEST", d)) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(
          "NEW CERTIFICATE REQUEST",
          "CERTIFICATE",
          "PRIVATE KEY",
          "X509 CRL",
          "",
          "CERTIFICATE REQUEST ",
        )
        .map((label) => pem(label, der())),
    },
    { weight: 1, arbitrary: fc.constant(null).map(() => der().toString("base64")) },
    { weight: 1, arbitrary: fc.constant(null).map(() => der().toString("latin1")) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(junkString(40), junkString(40))
        .map(([a, b]) => `${a}${pem("CERTIFICATE REQUEST", der())}${b}`),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 2, max: 30 }).map((n) => pem("CERTIFICATE REQUEST", der()).repeat(n)),
    },
    { weight: 1, arbitrary: junkString(300) },
    {
      weight: 1,
      arbitrary: fc
        .string({
          minLength: 1,
          maxLength: 80,
          unit: fc.constantFrom("A", "=", "-", "\n", " ", "*", "\u0000"),
        })
        .map((s) => `-----BEGIN CERTIFICATE REQUEST-----\n${s}\n-----END CERTIFICATE REQUEST-----`),
    },
  );
}

describe("hostile CSRs", () => {
  it("POST /api/v1/enroll: a catalogue error for a broken CSR; nothing stored on refusal", async () => {
    await fc.assert(
      fc.asyncProperty(
        hostileCsr(() => csrDer),
        fc.integer({ min: 0, max: 1e9 }),
        async (csr, n) => {
          const before = await gateway.snapshot();
          const reply = await gateway.call({
            path: "/api/v1/enroll",
            body: JSON.stringify({ csr, name: `csr-${n}` }),
          });
          expectSuccessOrCatalogue(reply, `enroll csr=${JSON.stringify(csr.slice(0, 200))}`);
          if (reply.status >= 400)
            expect(await gateway.snapshot(), "stored state after a refusal").toBe(before);
        },
      ),
      runs(200),
    );
  });

  it("POST /api/v1/certs/renew: a catalogue error for a broken CSR; nothing stored on refusal", async () => {
    await fc.assert(
      fc.asyncProperty(
        hostileCsr(() => nodeCsrDer),
        async (csr) => {
          const before = await gateway.snapshot();
          const reply = await gateway.call({
            path: "/api/v1/certs/renew",
            body: JSON.stringify({ csr }),
            agent: nodeAgent,
          });
          expectSuccessOrCatalogue(reply, `renew csr=${JSON.stringify(csr.slice(0, 200))}`);
          if (reply.status >= 400)
            expect(await gateway.snapshot(), "stored state after a refusal").toBe(before);
        },
      ),
      runs(200),
    );
  });

  it("after the run: a node session opened before it is still up and answering", async () => {
    await watcher.expectStillUp();
  });
});
