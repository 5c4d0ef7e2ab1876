import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import {
  createCsr,
  exportPrivateKeyPem,
  generateKeyPair,
  identityOfSpki,
  importKeyPairPem,
  issueClientCertificate,
  loadCertificateAuthority,
  spkiOf,
} from "../../src/pki/index.js";
import { compressedPointCsr } from "../fixtures/key-encodings.js";
import { listDevices, registeredNode, runCli, runJson, type Running } from "./harness.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import { gatewayForFile } from "./file-gateway.js";

interface Reply {
  status: number;
  body: { error?: string; error_description?: string; deviceId?: string; [key: string]: unknown };
}

const gateway = gatewayForFile();

/** A real HTTPS request to the gateway, with the body bytes exactly as given. */
function call(
  route: string,
  options: { body?: string | Buffer; key?: string; cert?: string } = {},
): Promise<Reply> {
  const ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
  return new Promise((resolve, reject) => {
    const request = https.request(
      gateway.url + route,
      {
        method: options.body === undefined ? "GET" : "POST",
        ca,
        key: options.key,
        cert: options.cert,
        headers: options.body === undefined ? {} : { "content-type": "application/json" },
      },
      (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : {} }),
        );
      },
    );
    request.on("error", reject);
    request.end(options.body);
  });
}

describe("names that a person could not read are refused at registration", () => {
  let csr: string;
  beforeAll(async () => {
    csr = await createCsr(await generateKeyPair(), "n");
  });
  const json = (name: string) => () => JSON.stringify({ csr, name });

  it.each<[string, () => string | Buffer, RegExp]>([
    ["all spaces", json("      "), /only spaces/],
    ["U+3164 HANGUL FILLER", json("\u3164"), /invisible character \(U\+3164\)/],
    ["U+3164 after a name", json("laptop\u3164"), /invisible character \(U\+3164\)/],
    ["U+2800 BRAILLE PATTERN BLANK", json("\u2800"), /U\+2800/],
    // JSON.stringify escapes a lone surrogate as \ud800; the parser turns it back into one.
    ["a lone surrogate", json("laptop\ud800"), /lone surrogate/],
    [
      "bytes that are not UTF-8",
      () =>
        Buffer.concat([
          Buffer.from(`{"csr":${JSON.stringify(csr)},"name":"lap`),
          Buffer.from([0xff, 0xfe, 0xc3]),
          Buffer.from(`top"}`),
        ]),
      /not valid UTF-8/,
    ],
  ])(
    "refuses a name of %s with invalid_request naming the problem, and stores nothing",
    async (_what, body, description) => {
      const before = await listDevices(gateway);
      const reply = await call("/api/v1/enroll", { body: body() });
      expect({ status: reply.status, code: reply.body.error }).toEqual({
        status: 400,
        code: "invalid_request",
      });
      expect(reply.body.error_description).toMatch(description);
      expect(await listDevices(gateway)).toEqual(before);
    },
  );

  it("stores an accepted name in its one normal form", async () => {
    const csr = await createCsr(await generateKeyPair(), "n");
    const reply = await call("/api/v1/enroll", { body: JSON.stringify({ csr, name: "  Cafe\u0301 box " }) });
    expect(reply.status).toBe(202);
    const device = (await listDevices(gateway, true)).find((d) => d.deviceId === reply.body.deviceId);
    expect(device?.name).toBe("Caf\u00e9 box");
  });
});

describe("a pending registration cannot take an approved node's name", () => {
  let node: Running | undefined;
  afterAll(() => stopAgent(node));

  it("nodes exec NAME still reaches the approved node while a namesake waits for approval", async () => {
    const { home, deviceId } = await registeredNode(gateway, "namesake");
    node = await startAgentAllowing(home, ["uname"]);

    // Anyone can ask to register under that name; written differently in case, too.
    for (const name of ["namesake", "NameSake"]) {
      const csr = await createCsr(await generateKeyPair(), "n");
      expect((await call("/api/v1/enroll", { body: JSON.stringify({ csr, name }) })).status).toBe(202);
    }
    expect(
      (await listDevices(gateway, true)).filter((d) => d.name.toLowerCase() === "namesake"),
    ).toHaveLength(2);

    const result = await runCli([
      "nodes",
      "exec",
      "namesake",
      "--home",
      gateway.home,
      "--json",
      "--",
      "uname",
    ]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ deviceId, exitCode: 0 });
    // History answers to the same name through the same resolver.
    const history = await runJson<{ history: { command: string }[] }>([
      "nodes",
      "history",
      "namesake",
      "--home",
      gateway.home,
    ]);
    expect(history.history.map((h) => h.command)).toEqual(["uname"]);
  });
});

describe("one key is one device, whatever encoding its CSR uses", () => {
  it("refuses a revoked key sent again as a compressed point, under the same device id", async () => {
    const { home, deviceId } = await registeredNode(gateway, "compressed");
    await runJson(["devices", "revoke", deviceId, "--home", gateway.home]);
    const keys = await importKeyPairPem(readFileSync(path.join(home, "device.key"), "utf8"));
    const csr = await compressedPointCsr(keys, deviceId);
    const before = await listDevices(gateway);

    const reply = await call("/api/v1/enroll", { body: JSON.stringify({ csr, name: "compressed-again" }) });
    expect(reply.status).toBe(403);
    expect(reply.body.error).toBe("device_revoked");
    expect(reply.body.error_description).toContain(deviceId);
    expect(await listDevices(gateway)).toEqual(before);
  });

  it("knows an approved key sent as a compressed point: the same device, not a new one", async () => {
    const { home, deviceId } = await registeredNode(gateway, "squeezed");
    const keys = await importKeyPairPem(readFileSync(path.join(home, "device.key"), "utf8"));
    const reply = await call("/api/v1/enroll", {
      body: JSON.stringify({ csr: await compressedPointCsr(keys, deviceId), name: "squeezed-twin" }),
    });
    expect(reply.status).toBe(202);
    expect(reply.body.deviceId).toBe(deviceId);
    expect((await listDevices(gateway)).filter((d) => d.name === "squeezed-twin")).toEqual([]);
  });

  it("refuses a client certificate whose key is not the key of the device it names", async () => {
    const { deviceId } = await registeredNode(gateway, "impersonated");
    // A certificate from the gateway's own CA that names the device but certifies another key:
    // what a certificate issued for a second encoding of a key looked like.
    const ca = await loadCertificateAuthority(
      readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8"),
      readFileSync(path.join(gateway.home, "pki/ca.key"), "utf8"),
    );
    const other = await generateKeyPair();
    expect(identityOfSpki(await spkiOf(other.publicKey)).deviceId).not.toBe(deviceId);
    const issued = await issueClientCertificate(ca, {
      publicKey: other.publicKey,
      deviceId,
      now: new Date(),
      ttlMs: 3_600_000,
    });
    const reply = await call("/api/v1/auth/validate", {
      key: await exportPrivateKeyPem(other.privateKey),
      cert: issued.pem,
    });
    expect(reply.status).toBe(401);
    expect(reply.body.error).toBe("cert_untrusted");
    expect(reply.body.error_description).toContain(`not the key of device ${deviceId}`);
  });
});
