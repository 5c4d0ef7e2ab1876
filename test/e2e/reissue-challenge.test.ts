import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createCsr, generateKeyPair, verifyCsr } from "../../src/pki/index.js";
import { signReissueProof } from "../fixtures/reissue.js";
import { cleanupAll, runJson, startTestGateway, type TestGateway } from "./harness.js";
import { httpsRequest, type RawResponse } from "./lifecycle-fixtures.js";

// The re-issue challenge is anonymous: until a caller proves it holds a device's key, the gateway
// answers the same way whatever it knows of the device id (unknown, pending, denied, revoked,
// approved). Only the signed response gets the device's real state.

let gateway: TestGateway;
let ca: string;

interface Device {
  deviceId: string;
  keys: CryptoKeyPair;
}
const devices: Record<"unknown" | "pending" | "denied" | "revoked" | "approved", Device> = {} as never;

async function newKey(name: string): Promise<Device & { csr: string }> {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, name);
  return { keys, csr, deviceId: (await verifyCsr(csr)).deviceId };
}

async function registered(name: string, then?: "approve" | "deny" | "revoke"): Promise<Device> {
  const device = await newKey(name);
  const enrolled = await httpsRequest(`${gateway.url}/api/v1/enroll`, {
    tls: { ca },
    body: { csr: device.csr, name },
  });
  expect(enrolled.status).toBe(202);
  if (then === "approve" || then === "revoke")
    await runJson(["devices", "approve", device.deviceId, "--home", gateway.home]);
  if (then === "deny" || then === "revoke")
    await runJson(["devices", then, device.deviceId, "--home", gateway.home]);
  return device;
}

function post(route: string, body: unknown): Promise<RawResponse> {
  return httpsRequest(`${gateway.url}/api/v1/certs/${route}`, { tls: { ca }, body });
}

async function signedReissue(device: Device, signer: CryptoKeyPair = device.keys): Promise<RawResponse> {
  const { challenge } = (await post("challenge", { deviceId: device.deviceId })).json<{
    challenge: string;
  }>();
  const signature = await signReissueProof(signer.privateKey, device.deviceId, challenge);
  return post("reissue", {
    deviceId: device.deviceId,
    challenge,
    signature,
    csr: await createCsr(device.keys, device.deviceId),
  });
}

beforeAll(async () => {
  gateway = await startTestGateway({ configure: (c) => (c.enroll = { perAddressPerMinute: 1000 }) });
  ca = readFileSync(path.join(gateway.home, "pki", "ca.pem"), "utf8");
  devices.unknown = await newKey("stranger");
  devices.pending = await registered("waiting");
  devices.denied = await registered("refused", "deny");
  devices.revoked = await registered("gone", "revoke");
  devices.approved = await registered("member", "approve");
});
afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

describe("POST /api/v1/certs/challenge, anonymous", () => {
  it("answers unknown, pending, denied, revoked and approved device ids alike", async () => {
    const answers = [];
    for (const [state, device] of Object.entries(devices)) {
      const response = await post("challenge", { deviceId: device.deviceId });
      const body = response.json<{ challenge: string; expiresAt: string }>();
      answers.push({
        state,
        status: response.status,
        keys: Object.keys(body).sort(),
        challenge: /^[A-Za-z0-9_-]{43}$/.test(body.challenge),
        expiresAt: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(body.expiresAt),
        length: response.body.length,
      });
    }
    const like = { status: 200, keys: ["challenge", "expiresAt"], challenge: true, expiresAt: true };
    for (const answer of answers) expect(answer, answer.state).toMatchObject(like);
    expect(new Set(answers.map((a) => a.length)).size).toBe(1);
  });

  it("tells the device's state only to a caller who signed the challenge with its key", async () => {
    const refusal = async (device: Device, signer?: CryptoKeyPair) => {
      const response = await signedReissue(device, signer);
      return { status: response.status, ...response.json<{ error: string }>() };
    };
    expect(await refusal(devices.pending)).toMatchObject({ status: 403, error: "device_pending" });
    expect(await refusal(devices.denied)).toMatchObject({ status: 403, error: "device_denied" });
    expect(await refusal(devices.revoked)).toMatchObject({ status: 403, error: "device_revoked" });

    // Without the key, an unknown id and a known one (of any state) get the same refusal.
    const stranger = (await newKey("other")).keys;
    const unproved = [
      await refusal(devices.unknown),
      ...(await Promise.all(
        (["pending", "denied", "revoked", "approved"] as const).map((s) => refusal(devices[s], stranger)),
      )),
    ];
    for (const answer of unproved) expect(answer).toEqual(unproved[0]);
    expect(unproved[0]).toMatchObject({ status: 400, error: "invalid_request" });

    const reissued = await signedReissue(devices.approved);
    expect(reissued.status).toBe(200);
    expect(reissued.json()).toHaveProperty("certificate");
  });
});
