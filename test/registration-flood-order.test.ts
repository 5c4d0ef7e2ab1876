import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import {
  ParsedCsr,
  SIGNING_ALGORITHM,
  createCsr,
  generateKeyPair,
  identityOfSpki,
  spkiOf,
  x509,
} from "../src/pki/index.js";
import { compressedPointCsr } from "./fixtures/key-encodings.js";

// At the pending cap a registration from a key this gateway does not know is refused before its
// CSR's signature is checked (the costly step a flood buys), while a key that already waits still
// gets its request back: the refusal depends on the queue, never on who asks.

let dir: string;
let gateway: RunningGateway;
const ADDRESS = "203.0.113.7";

async function newKey(name: string) {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, name);
  return { csr, name, deviceId: identityOfSpki(await spkiOf(keys.publicKey)).deviceId };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-regflood-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  gateway = await startGateway(home, { logger: pino({ level: "silent" }) });
  gateway.ctx.config.enroll.maxPending = 2;
});

afterAll(async () => {
  vi.restoreAllMocks();
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("registrations at the pending cap", () => {
  it("a new key is refused rate_limited without its CSR being verified; a waiting key still gets its request", async () => {
    const first = await newKey("first");
    const second = await newKey("second");
    const waiting = await gateway.ctx.registrations.enroll(first, ADDRESS);
    expect(waiting.status).toBe("pending");
    expect((await gateway.ctx.registrations.enroll(second, ADDRESS)).status).toBe("pending");

    const verify = vi.spyOn(ParsedCsr.prototype, "verify");
    const refusals = vi.spyOn(gateway.ctx.audit, "recordRefusal");
    const stranger = await newKey("stranger");
    await expect(gateway.ctx.registrations.enroll(stranger, ADDRESS)).rejects.toMatchObject({
      code: "rate_limited",
      status: 429,
      retryAfterSeconds: 60,
    });
    expect(verify).not.toHaveBeenCalled();
    // The same refusal, audited as the queue-full refusal always was, and nothing stored.
    expect(refusals).toHaveBeenCalledWith(
      expect.objectContaining({
        type: "enroll",
        code: "rate_limited",
        subject: stranger.deviceId,
        address: ADDRESS,
      }),
    );
    expect(await gateway.ctx.store.getDevice(stranger.deviceId)).toBeUndefined();
    expect(await gateway.ctx.store.countPendingRegistrations(new Date().toISOString())).toBe(2);

    // The first node restarted while it waits: same key, its same request (verified, as always).
    const again = await gateway.ctx.registrations.enroll(first, ADDRESS);
    expect(again).toMatchObject({
      status: "pending",
      requestId: waiting.requestId,
      deviceId: first.deviceId,
    });
    expect(verify).toHaveBeenCalledTimes(1);
    verify.mockRestore();
    refusals.mockRestore();
  });

  it("a CSR that does not parse is still invalid_request at the cap, not rate_limited", async () => {
    await expect(
      gateway.ctx.registrations.enroll(
        { csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----", name: "x" },
        ADDRESS,
      ),
    ).rejects.toMatchObject({ code: "invalid_request" });
  });

  it("a waiting key sent again as a compressed point still gets its request at the cap", async () => {
    expect(await gateway.ctx.store.countPendingRegistrations(new Date().toISOString())).toBe(2);
    const keys = await generateKeyPair();
    gateway.ctx.config.enroll.maxPending = 3;
    const waiting = await gateway.ctx.registrations.enroll(
      { csr: await createCsr(keys, "k"), name: "k" },
      ADDRESS,
    );
    const again = await gateway.ctx.registrations.enroll(
      { csr: await compressedPointCsr(keys, "k"), name: "k" },
      ADDRESS,
    );
    expect(again).toMatchObject({ status: "pending", requestId: waiting.requestId });
  });
});

describe("the key identity read before verification", () => {
  async function expectClaimedIsVerified(csr: string): Promise<void> {
    const parsed = ParsedCsr.parse(csr);
    const verified = await parsed.verify();
    expect(parsed.claimed()).toEqual({
      deviceId: verified.deviceId,
      keyFingerprint: verified.keyFingerprint,
      spki: new Uint8Array(verified.spki),
    });
  }

  it("is the verified one, for the canonical encoding and for a compressed point", async () => {
    const keys = await generateKeyPair();
    await expectClaimedIsVerified(await createCsr(keys, "same"));
    await expectClaimedIsVerified(await compressedPointCsr(keys, "same"));
  });

  it("is the request's own key even when another key's SPKI is also in the request", async () => {
    const other = await spkiOf((await generateKeyPair()).publicKey);
    const keys = await generateKeyPair();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      // A subject attribute (before the request's own key) holding another key's SPKI, byte for
      // byte: an OCTET STRING in RFC 4514's `#` hex form.
      name: `CN=twin, 1.3.6.1.4.1.55555.1=#045b${Buffer.from(other).toString("hex")}`,
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
    });
    const der = Buffer.from(csr.rawData);
    const own = Buffer.from(await spkiOf(keys.publicKey));
    expect(der.indexOf(Buffer.from(other))).toBeLessThan(der.indexOf(own));
    await expectClaimedIsVerified(csr.toString("pem"));
  });
});
