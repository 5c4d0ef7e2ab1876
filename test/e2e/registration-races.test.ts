import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createCsr, generateKeyPair } from "../../src/pki/index.js";
import { cleanupAll, listDevices, runJson, startTestGateway, type TestGateway } from "./harness.js";
import { httpsRequest, type RawResponse } from "./lifecycle-fixtures.js";

// Registrations that race each other, sent as raw parallel POSTs so they really interleave in the
// gateway: a refused one leaves nothing behind, and the pending cap holds.

const MAX_PENDING = 5;
let gateway: TestGateway;
let ca: string;

// Each case starts from an empty gateway of its own, so one case's leftovers cannot mask another's.
beforeEach(async () => {
  gateway = await startTestGateway({
    configure: (c) => (c.enroll = { maxPending: MAX_PENDING, perAddressPerMinute: 1000 }),
  });
  ca = readFileSync(path.join(gateway.home, "pki", "ca.pem"), "utf8");
});
afterEach(async () => {
  await gateway.stop();
});
afterAll(cleanupAll);

/** POST /api/v1/enroll with a fresh key, as a node would. */
async function enroll(name: string, enrollToken?: string): Promise<RawResponse> {
  const csr = await createCsr(await generateKeyPair(), name);
  return httpsRequest(`${gateway.url}/api/v1/enroll`, {
    tls: { ca },
    body: { csr, name, ...(enrollToken === undefined ? {} : { enrollToken }) },
  });
}

/** Many registrations at once; the CSRs are made first so the requests leave together. */
async function enrollAll(names: string[], enrollToken?: string): Promise<RawResponse[]> {
  const bodies = await Promise.all(
    names.map(async (name) => ({
      csr: await createCsr(await generateKeyPair(), name),
      name,
      ...(enrollToken === undefined ? {} : { enrollToken }),
    })),
  );
  return Promise.all(
    bodies.map((body) => httpsRequest(`${gateway.url}/api/v1/enroll`, { tls: { ca }, body })),
  );
}

function codes(responses: RawResponse[]): string[] {
  return responses.map((r) =>
    r.status === 202 ? r.json<{ status: string }>().status : (r.json().error as string),
  );
}

async function nodes() {
  return (await listDevices(gateway)).filter((d) => d.kind === "node");
}

describe("concurrent registrations", () => {
  it("on a single-use enroll token: one approved, the rest refused and leaving no device behind", async () => {
    const { token } = await runJson<{ token: string }>([
      "enroll",
      "create",
      "--uses",
      "1",
      "--home",
      gateway.home,
    ]);
    const names = Array.from({ length: 10 }, (_, i) => `racer-${i}`);
    const responses = await enrollAll(names, token);

    const answers = codes(responses);
    expect(answers.filter((a) => a === "approved")).toHaveLength(1);
    expect(answers.filter((a) => a === "invalid_token")).toHaveLength(9);
    for (const refused of responses.filter((r) => r.status !== 202)) expect(refused.status).toBe(401);

    expect(await listDevices(gateway, true)).toEqual([]);
    const all = await nodes();
    expect(all).toHaveLength(1);
    expect(all[0]!.status).toBe("approved");
  });

  it("at the pending cap, refused enroll-token registrations do not push the queue past it", async () => {
    for (let i = 1; i <= MAX_PENDING; i++) expect((await enroll(`waiting-${i}`)).status).toBe(202);
    const { token } = await runJson<{ token: string }>([
      "enroll",
      "create",
      "--uses",
      "1",
      "--home",
      gateway.home,
    ]);
    const answers = codes(
      await enrollAll(
        Array.from({ length: 10 }, (_, i) => `racer-${i}`),
        token,
      ),
    );
    // A token registration is approved at once: it never waits in the queue the cap protects.
    expect(answers.filter((a) => a === "approved")).toHaveLength(1);
    expect(answers.filter((a) => a === "invalid_token")).toHaveLength(9);
    expect(await listDevices(gateway, true)).toHaveLength(MAX_PENDING);
    expect(await nodes()).toHaveLength(MAX_PENDING + 1);
  });

  it(`fill the pending queue from below to the cap (${MAX_PENDING}) and no further`, async () => {
    for (const name of ["waiting-1", "waiting-2", "waiting-3"]) expect((await enroll(name)).status).toBe(202);
    expect(await listDevices(gateway, true)).toHaveLength(3);

    const responses = await enrollAll(Array.from({ length: 10 }, (_, i) => `rush-${i}`));
    const answers = codes(responses);
    expect(answers.filter((a) => a === "pending")).toHaveLength(MAX_PENDING - 3);
    expect(answers.filter((a) => a === "rate_limited")).toHaveLength(10 - (MAX_PENDING - 3));
    expect(await listDevices(gateway, true)).toHaveLength(MAX_PENDING);
  });

  it("at the cap, refuse every new registration with the catalogue code and store none of them", async () => {
    for (let i = 1; i <= MAX_PENDING; i++) expect((await enroll(`waiting-${i}`)).status).toBe(202);
    const before = await nodes();
    expect(before.filter((d) => d.status === "pending")).toHaveLength(MAX_PENDING);

    const responses = await enrollAll(Array.from({ length: 10 }, (_, i) => `late-${i}`));
    for (const response of responses) {
      expect(response.status).toBe(429);
      expect(response.json()).toMatchObject({ error: "rate_limited" });
    }
    expect(await listDevices(gateway, true)).toHaveLength(MAX_PENDING);
    expect((await nodes()).map((d) => d.deviceId).sort()).toEqual(before.map((d) => d.deviceId).sort());
  });
});
