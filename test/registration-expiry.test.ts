import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { createCsr, generateKeyPair, issueClientCertificate } from "../src/pki/index.js";
import type { EnrollResponse } from "../src/protocol/messages.js";

// A pending registration expires after enroll.pendingTtl (15 min by default): from then on no
// path may approve it, whatever the order of the clock readings along the way.

const MINUTE = 60_000;
const TTL = 15 * MINUTE;
let dir: string;
let gateway: RunningGateway;
/** The gateway's clock: each reading takes the next entry of `readings`, then stays at `base`. */
let base = Date.now();
let readings: number[] = [];

async function pending(name: string): Promise<EnrollResponse & { csrKeys: CryptoKeyPair }> {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, name);
  return { ...(await gateway.ctx.registrations.enroll({ csr, name }, "127.0.0.1")), csrKeys: keys };
}

async function deviceState(deviceId: string) {
  const device = await gateway.ctx.store.getDevice(deviceId);
  const certificates = await gateway.ctx.store.listCertificates(deviceId);
  return { status: device?.status, certificates: certificates.length };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-regexp-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  gateway = await startGateway(home, {
    logger: pino({ level: "silent" }),
    now: () => new Date(readings.shift() ?? base),
  });
});

afterAll(async () => {
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("an expired registration is never approved", () => {
  it("by user code or device id after its expiry: registration_expired, and nothing changes", async () => {
    base = Date.now();
    const reg = await pending("late");
    base += TTL + MINUTE;
    for (const id of [reg.userCode, reg.deviceId]) {
      await expect(gateway.ctx.registrations.approve(id, "node", "admin")).rejects.toMatchObject({
        code: "registration_expired",
        status: 410,
      });
    }
    expect(await deviceState(reg.deviceId)).toEqual({ status: "pending", certificates: 0 });
    expect((await gateway.ctx.registrations.status(reg.requestId)).status).toBe("expired");
  });

  it("an approval decided just before the expiry is not dated after it", async () => {
    base = Date.now();
    const reg = await pending("borderline");
    const expiry = Date.parse(reg.expiresAt);
    // The first reading (the decision) is a second before the expiry; every later one is after it.
    readings = [expiry - 1000];
    base = expiry + MINUTE;
    const device = await gateway.ctx.registrations
      .approve(reg.userCode, "node", "admin")
      .catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
    if (device instanceof Error) {
      // Refusing is allowed; approving with a date past the expiry is not.
      expect(device).toMatchObject({ code: "registration_expired" });
    } else {
      expect(Date.parse(device.approvedAt!)).toBeLessThan(expiry);
    }
    readings = [];
  });

  it("the store refuses an approval dated at or after the request's expiry", async () => {
    base = Date.now();
    const reg = await pending("store-level");
    const at = new Date(Date.parse(reg.expiresAt));
    const issued = await issueClientCertificate(gateway.ctx.tls.ca, {
      publicKey: reg.csrKeys.publicKey,
      deviceId: reg.deviceId,
      now: at,
      ttlMs: 60 * MINUTE,
    });
    await expect(
      gateway.ctx.store.recordApproval({
        deviceId: reg.deviceId,
        requestId: reg.requestId,
        role: "node",
        at: at.toISOString(),
        certificate: {
          serial: issued.serial,
          deviceId: reg.deviceId,
          fingerprint: issued.fingerprint,
          notBefore: issued.notBefore.toISOString(),
          notAfter: issued.notAfter.toISOString(),
          issuedAt: at.toISOString(),
          pem: issued.pem,
        },
      }),
    ).rejects.toMatchObject({ code: "registration_expired" });
    expect(await deviceState(reg.deviceId)).toEqual({ status: "pending", certificates: 0 });
  });

  it("one that has not expired is approved", async () => {
    base = Date.now();
    const reg = await pending("in-time");
    base += TTL - MINUTE;
    const device = await gateway.ctx.registrations.approve(reg.userCode, "node", "admin");
    expect(device.status).toBe("approved");
  });
});
