import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { GATEWAY_FILES } from "../src/config/index.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { signReissueProof } from "./fixtures/reissue.js";
import { ReissueChallenges } from "../src/gateway/reissue-challenges.js";
import { createCsr, generateKeyPair, verifyCsr } from "../src/pki/index.js";

// The re-issue challenge is the recovery path of every node whose certificate expired. Asking for
// one is anonymous, so it must cost the gateway no state: strangers asking from many addresses
// must not stop a real device from getting its certificate back. And each challenge still answers
// once, for one device, for 60 s, as the gateway issued it.

let dir: string;
let gateway: RunningGateway;
let ca: string;
/** The gateway's clock, moved by the tests: milliseconds ahead of the real one. */
let skew = 0;

interface Device {
  deviceId: string;
  keys: CryptoKeyPair;
}

interface Reply {
  status: number;
  body: Record<string, string>;
}

/** A POST over real TLS from 127.0.0.1, as a node sends it. */
function post(route: string, body: unknown): Promise<Reply> {
  const url = new URL(`/api/v1/certs/${route}`, gateway.url);
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      { method: "POST", ca, servername: "localhost", headers: { "content-type": "application/json" } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, string>,
          }),
        );
      },
    );
    request.on("error", reject);
    request.end(JSON.stringify(body));
  });
}

async function approvedDevice(name: string): Promise<Device> {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, name);
  const { deviceId } = await verifyCsr(csr);
  await gateway.ctx.registrations.enroll({ csr, name }, "127.0.0.1");
  await gateway.ctx.registrations.approve(deviceId, "node", "admin");
  return { deviceId, keys };
}

async function challengeFor(deviceId: string): Promise<string> {
  const reply = await post("challenge", { deviceId });
  expect(reply.status).toBe(200);
  return reply.body.challenge!;
}

/** Answers `challenge` as `device`, signed with `signer`'s key, for `device`'s id. */
async function answer(device: Device, challenge: string, signer: Device = device): Promise<Reply> {
  const signature = await signReissueProof(signer.keys.privateKey, device.deviceId, challenge);
  return post("reissue", {
    deviceId: device.deviceId,
    challenge,
    signature,
    csr: await createCsr(device.keys, device.deviceId),
  });
}

/** A refusal with the catalogue's code and the description a node would show. */
function expectRefused(reply: Reply, description: RegExp): void {
  expect(reply.status).toBe(400);
  expect(reply.body).toMatchObject({ error: "invalid_request" });
  expect(reply.body.error_description).toMatch(description);
}

function certificateOf(device: Device): string | null | undefined {
  return gateway.ctx.devices.get(device.deviceId)?.certFingerprint;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-reissue-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  gateway = await startGateway(home, {
    logger: pino({ level: "silent" }),
    now: () => new Date(Date.now() + skew),
  });
  ca = readFileSync(path.join(home, GATEWAY_FILES.caCert), "utf8");
});

afterAll(async () => {
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the re-issue challenge under a flood", () => {
  it("a real device gets its certificate after 20,000 challenges asked from 20,000 addresses", async () => {
    const device = await approvedDevice("survivor");
    const statuses = new Map<number, number>();
    for (let batch = 0; batch < 40; batch++) {
      const replies = await Promise.all(
        Array.from({ length: 500 }, (_, i) => {
          const n = batch * 500 + i;
          return gateway.app.inject({
            method: "POST",
            url: "/api/v1/certs/challenge",
            remoteAddress: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
            payload: { deviceId: device.deviceId },
          });
        }),
      );
      for (const reply of replies) statuses.set(reply.statusCode, (statuses.get(reply.statusCode) ?? 0) + 1);
    }
    // Every stranger was answered; none of it is held against anyone else.
    expect(Object.fromEntries(statuses)).toEqual({ 200: 20_000 });

    const before = certificateOf(device);
    const reply = await answer(device, await challengeFor(device.deviceId));
    expect(reply.status).toBe(200);
    expect(reply.body.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(certificateOf(device)).not.toBe(before);
  }, 180_000);
});

describe("a re-issue challenge answers once, for one device, for 60 s, as issued", () => {
  it("refuses a challenge replayed after a successful re-issue", async () => {
    const device = await approvedDevice("replayed");
    const challenge = await challengeFor(device.deviceId);
    expect((await answer(device, challenge)).status).toBe(200);
    const issued = certificateOf(device);
    expectRefused(await answer(device, challenge), /already been used/);
    expect(certificateOf(device)).toBe(issued);
  });

  it("refuses a challenge answered after it expired", async () => {
    const device = await approvedDevice("late");
    const challenge = await challengeFor(device.deviceId);
    const before = certificateOf(device);
    skew = 60_001;
    try {
      expectRefused(await answer(device, challenge), /expired/);
    } finally {
      skew = 0;
    }
    expect(certificateOf(device)).toBe(before);
  });

  it("refuses a challenge issued for one device and answered by another with its own key", async () => {
    const first = await approvedDevice("first");
    const second = await approvedDevice("second");
    const challenge = await challengeFor(first.deviceId);
    const before = certificateOf(second);
    expectRefused(await answer(second, challenge), /not issued .* for this device id/);
    expect(certificateOf(second)).toBe(before);
    // The challenge was not spent by the refusal: its own device can still answer it.
    expect((await answer(first, challenge)).status).toBe(200);
  });

  it("refuses a tampered challenge: nonce, expiry or tag changed, or another spelling", async () => {
    const device = await approvedDevice("tampered");
    const challenge = await challengeFor(device.deviceId);
    const bytes = Buffer.from(challenge, "base64url");
    const altered = (index: number) => {
      const copy = Buffer.from(bytes);
      copy[index] = copy[index]! ^ 0x01;
      return copy.toString("base64url");
    };
    // Byte 5 is the lowest byte of the expiry (a later expiry), 10 is in the nonce, 31 in the tag.
    // The last character carries 2 bits that base64url decoding ignores: flipping one gives the
    // same bytes under another spelling.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const respelled = challenge.slice(0, 42) + alphabet[alphabet.indexOf(challenge[42]!) ^ 1]!;
    expect(Buffer.from(respelled, "base64url")).toEqual(bytes);
    const spellings = [altered(5), altered(10), altered(31), respelled];
    const before = certificateOf(device);
    for (const spelling of spellings) {
      expectRefused(await answer(device, spelling), /not issued/);
    }
    expect(certificateOf(device)).toBe(before);
    expect((await answer(device, challenge)).status).toBe(200);
  });
});

describe("ReissueChallenges", () => {
  it("keeps nothing for issued challenges, and a spent one only until it expires", () => {
    const challenges = new ReissueChallenges();
    const deviceId = "a".repeat(26);
    const t = 1_800_000_000_000;
    for (let i = 0; i < 20_000; i++) challenges.issue(deviceId, t);
    expect(challenges.spentCount).toBe(0);
    const first = challenges.issue(deviceId, t);
    challenges.spend(challenges.check(deviceId, first.challenge, t + 1), t + 1);
    expect(challenges.spentCount).toBe(1);
    const second = challenges.issue(deviceId, t + 60_000);
    challenges.spend(challenges.check(deviceId, second.challenge, t + 60_001), t + 60_001);
    expect(challenges.spentCount).toBe(1);
  });
});
