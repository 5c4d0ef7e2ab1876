import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import * as jose from "jose";
import {
  identityOfSpki,
  importKeyPairPem,
  issueClientCertificate,
  loadCertificateAuthority,
  sha256Fingerprint,
  spkiOf,
} from "../../src/pki/index.js";
import { LAYERS, type Layer, type TestConnectionResult } from "../../src/node/test-connection.js";
import type { ErrorCode } from "../../src/protocol/errors.js";
import { keyEncryptionKey, openPrivateKey } from "../../src/auth/key-encryption.js";
import {
  CLI,
  Running,
  cleanupAll,
  freePort,
  nodeRegisterArgs,
  probeHealth,
  registeredNode,
  runCli,
  runJson,
  spawnCli,
  startRegistration,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";
import { opensslSelfSigned } from "./openssl.js";

/** How long test-connection took per case (totalMs): the team reports these figures. */
const timings: { name: string; code: string; totalMs: number }[] = [];

async function testConnection(
  name: string,
  home: string,
  extra: string[] = [],
): Promise<{ exit: number | null; result: TestConnectionResult }> {
  const run = await runCli(["node", "test-connection", "--home", home, "--json", ...extra]);
  let result: TestConnectionResult;
  try {
    result = JSON.parse(run.stdout) as TestConnectionResult;
  } catch {
    throw new Error(`test-connection printed no JSON (exit ${run.code})\n${run.stdout}\n${run.stderr}`);
  }
  timings.push({ name, code: result.error?.code ?? "ok", totalMs: result.totalMs });
  return { exit: run.code, result };
}

/** Exit 1, the first failure named at that layer, every layer before it fine, none after it run. */
function expectFailure(
  outcome: { exit: number | null; result: TestConnectionResult },
  layer: Layer,
  code: ErrorCode,
): { description: string; hint: string } {
  const { exit, result } = outcome;
  const context = JSON.stringify(result, null, 2);
  expect(result.error, context).toMatchObject({ layer, code });
  expect(exit, context).toBe(1);
  expect(result.ok).toBe(false);
  const index = LAYERS.indexOf(layer);
  expect(result.layers.map((l) => l.layer)).toEqual(LAYERS.slice(0, index + 1));
  expect(
    result.layers.slice(0, index).every((l) => l.ok),
    context,
  ).toBe(true);
  expect(result.layers[index]).toMatchObject({ layer, ok: false, code });
  expect(result.error!.hint).toBeTruthy();
  return { description: result.error!.description, hint: result.error!.hint };
}

function gatewayIdOf(gateway: { home: string }): string {
  const config = JSON.parse(readFileSync(path.join(gateway.home, "gateway.json"), "utf8")) as {
    gatewayId: string;
  };
  return config.gatewayId;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port));
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if ("closeAllConnections" in server) (server as http.Server).closeAllConnections();
    server.close(() => resolve());
  });
}

/** A self-signed P-256 certificate made by openssl, as a forgotten container would have. */
function selfSignedCertificate(): { key: string; cert: string } {
  return opensslSelfSigned(path.dirname(tempHome("forgotten")), "server", { commonName: "localhost" });
}

/**
 * A gateway token signed with the gateway's own current signing key, with chosen claims: what a
 * holder of the whole home (the database and pki/signing-keys.kek) can do.
 */
async function signWithGatewayKey(
  gateway: TestGateway,
  claims: { iat: number; exp: number; sub: string },
): Promise<string> {
  const db = new Database(path.join(gateway.home, "gatehouse.db"), { readonly: true, fileMustExist: true });
  let row: { kid: string; alg: string; sealed_private_key: string } | undefined;
  try {
    row = db
      .prepare(
        "SELECT kid, alg, sealed_private_key FROM signing_keys WHERE verify_until IS NULL ORDER BY created_at DESC LIMIT 1",
      )
      .get() as typeof row;
  } finally {
    db.close();
  }
  if (!row) throw new Error("the gateway has no signing key yet");
  expect(row.alg).toBe("ES256");
  const kekFile = path.join(gateway.home, "pki/signing-keys.kek");
  const kek = keyEncryptionKey(Buffer.from(readFileSync(kekFile, "utf8").trim(), "hex"), kekFile);
  const key = await jose.importPKCS8(openPrivateKey(kek, row.kid, row.sealed_private_key), "ES256");
  const gatewayId = gatewayIdOf(gateway);
  return new jose.SignJWT({ scope: "node:connect" })
    .setProtectedHeader({ alg: "ES256", kid: row.kid, typ: "at+jwt" })
    .setIssuer(gatewayId)
    .setAudience(gatewayId)
    .setSubject(claims.sub)
    .setIssuedAt(claims.iat)
    .setExpirationTime(claims.exp)
    .setJti("x")
    .sign(key);
}

let gateway: TestGateway;
/** A second installation: its own CA and its own gateway id (cases 5 and 10). */
let other: TestGateway;
/** A node of `gateway`, registered and approved, that stays healthy. */
let healthy: { home: string; deviceId: string };

beforeAll(async () => {
  [gateway, other] = await Promise.all([startTestGateway(), startTestGateway()]);
  healthy = await registeredNode(gateway, "healthy");
});

afterAll(async () => {
  await Promise.all([gateway?.stop(), other?.stop()]);
  cleanupAll();
  const width = Math.max(...timings.map((t) => t.name.length));
  console.log(
    [
      "node test-connection timings (totalMs):",
      ...timings.map(
        (t) => `  ${t.name.padEnd(width)}  ${t.code.padEnd(20)} ${String(t.totalMs).padStart(6)} ms`,
      ),
    ].join("\n"),
  );
});

describe("node test-connection on a healthy node", () => {
  it("passes all nine layers, in JSON and in the human output", async () => {
    const { exit, result } = await testConnection("healthy", healthy.home);
    expect(exit, JSON.stringify(result, null, 2)).toBe(0);
    expect(result.ok).toBe(true);
    expect(result.error).toBeNull();
    expect(result.gatewayUrl).toBe(gateway.url);
    expect(result.layers.map((l) => l.layer)).toEqual([...LAYERS]);
    expect(result.layers.every((l) => l.ok && l.code === undefined)).toBe(true);
    expect(result.layers.find((l) => l.layer === "http")?.detail).toContain(gatewayIdOf(gateway));

    const human = await runCli(["node", "test-connection", "--home", healthy.home]);
    expect(human.code, human.stdout + human.stderr).toBe(0);
    const lines = human.stdout.split("\n");
    for (const layer of LAYERS) {
      expect(
        lines.some((line) => new RegExp(`^✓ ${layer}\\s`).test(line)),
        `✓ ${layer}\n${human.stdout}`,
      ).toBe(true);
    }
    expect(lines.some((line) => line.startsWith("✗"))).toBe(false);
    expect(human.stdout).toMatch(/✓ all layers fine in \d+ ms/);
  });
});

describe("below HTTP: the name, the port, and what answers on it", () => {
  it("1. a host name that does not resolve: dns_failed at dns", async () => {
    const port = await freePort();
    const run = await testConnection("1 dns: no such host", healthy.home, [
      "--gateway",
      `https://no-such-host.invalid:${port}`,
    ]);
    const { description } = expectFailure(run, "dns", "dns_failed");
    expect(description).toContain("no-such-host.invalid");
    expect(run.result.gatewayUrl).toBe(`https://no-such-host.invalid:${port}`);
  });

  it("2. nothing listens on the port: connection_refused at tcp", async () => {
    const port = await freePort();
    const run = await testConnection("2 tcp: refused", healthy.home, [
      "--gateway",
      `https://127.0.0.1:${port}`,
    ]);
    expectFailure(run, "tcp", "connection_refused");
  });

  it("3. the port does not answer (full accept queue, SYNs dropped): connection_timeout at tcp", async () => {
    const listener = spawn(
      "python3",
      [
        "-c",
        "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(0); print(s.getsockname()[1], flush=True); time.sleep(60)",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const sockets: net.Socket[] = [];
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = "";
        listener.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes("\n")) resolve(Number(out.trim()));
        });
        listener.once("error", reject);
        listener.once("exit", (code) => reject(new Error(`python3 exited ${code}`)));
      });
      expect(port).toBeGreaterThan(0);
      // Nobody accepts: three connections fill the queue of a listen(0) socket, later SYNs are dropped.
      for (let i = 0; i < 3; i++) {
        const socket = net.connect({ host: "127.0.0.1", port });
        socket.on("error", () => {});
        sockets.push(socket);
      }
      await sleep(300);
      const run = await testConnection("3 tcp: filtered", healthy.home, [
        "--gateway",
        `https://127.0.0.1:${port}`,
        "--timeout",
        "1500",
      ]);
      const { description } = expectFailure(run, "tcp", "connection_timeout");
      expect(description).toContain("1500 ms");
    } finally {
      for (const socket of sockets) socket.destroy();
      listener.kill("SIGKILL");
    }
  });

  it("4a. a plain HTTP server answers: not_a_gateway at tls", async () => {
    const server = http.createServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/plain" });
      response.end("hello from something else\n");
    });
    const port = await listen(server);
    try {
      const run = await testConnection("4a tls: plain HTTP", healthy.home, [
        "--gateway",
        `https://127.0.0.1:${port}`,
      ]);
      const { description } = expectFailure(run, "tls", "not_a_gateway");
      expect(description).toContain("not with TLS");
    } finally {
      await close(server);
    }
  });

  it("4b. a TLS server with a self-signed certificate (a forgotten container): ca_mismatch at tls", async () => {
    const tls = selfSignedCertificate();
    const presented = sha256Fingerprint(new X509Certificate(tls.cert).raw);
    const server = https.createServer(tls, (_request, response) => {
      response.writeHead(200, { "content-type": "text/html" });
      response.end("<h1>It works!</h1>\n");
    });
    const port = await listen(server);
    try {
      const run = await testConnection("4b tls: forgotten container", healthy.home, [
        "--gateway",
        `https://127.0.0.1:${port}`,
      ]);
      const { description } = expectFailure(run, "tls", "ca_mismatch");
      expect(description).toContain(gateway.caFingerprint);
      expect(description).toContain(presented);
      expect(description).toMatch(/sha256:[0-9a-f]{64}/);
      expect(description).toContain("not a Gatehouse gateway");
    } finally {
      await close(server);
    }
  });

  it("5. a gateway of another installation answers: ca_mismatch at tls, naming that gateway", async () => {
    const run = await testConnection("5 tls: another gateway", healthy.home, ["--gateway", other.url]);
    const { description } = expectFailure(run, "tls", "ca_mismatch");
    const otherId = gatewayIdOf(other);
    expect(otherId).toMatch(/^gw_/);
    expect(description).toContain(otherId);
    expect(description).toContain("another Gatehouse gateway");
    expect(description).toContain(gateway.caFingerprint);
  });
});

describe("the device's state on the gateway", () => {
  it("6. pending approval: device_pending at device, with the user code", async () => {
    const { home, register, device } = await startRegistration(gateway, "waiting");
    try {
      await register.waitFor(() => register.stdout.includes(device.userCode!), "the user code on the node");
      const run = await testConnection("6 device: pending", home);
      const { description } = expectFailure(run, "device", "device_pending");
      expect(description).toContain(device.userCode!);
      expect(description).toContain(device.deviceId);
      expect(register.child.exitCode).toBeNull();
    } finally {
      register.child.kill("SIGTERM");
      await register.exited;
    }
  });

  it("7. denied: device_denied at device", async () => {
    const { home, register, device } = await startRegistration(gateway, "stranger");
    const denied = await runCli([
      "devices",
      "deny",
      device.deviceId,
      "--reason",
      "not one of ours",
      "--home",
      gateway.home,
    ]);
    expect(denied.code).toBe(0);
    expect(await register.exited).toBe(1);
    const run = await testConnection("7 device: denied", home);
    const { description } = expectFailure(run, "device", "device_denied");
    expect(description).toContain(device.deviceId);
    expect(description).toContain("not one of ours");
  });

  it("8. revoked: node status follows the agent, test-connection says device_revoked, the gateway lists the refusal", async () => {
    const { home, deviceId } = await registeredNode(gateway, "fired");
    const agent = spawnCli(["node", "start", "--home", home]);
    await agent.waitFor(() => agent.logLines().some((l) => l.state === "connected"), "the node to connect");

    // The status file written by the running agent, with a live pid.
    let status = await runJson<{
      state: string;
      running: boolean;
      pid: number | null;
      deviceId: string | null;
      lastError: { code: string } | null;
    }>(["node", "status", "--home", home]);
    expect(status).toMatchObject({ state: "connected", running: true, deviceId, lastError: null });
    expect(status.pid).toBe(agent.child.pid);

    expect((await runCli(["devices", "revoke", deviceId, "--home", gateway.home])).code).toBe(0);
    expect(await agent.exited).toBe(1);
    status = await runJson(["node", "status", "--home", home]);
    expect(status).toMatchObject({ running: false, state: "not running", pid: null });
    expect(status.lastError?.code).toBe("device_revoked");

    const run = await testConnection("8 device: revoked", home);
    const { description } = expectFailure(run, "device", "device_revoked");
    expect(description).toContain("revoked");

    // The gateway remembers the refused attempt of this device, with its code.
    const shown = await runJson<{
      device: { status: string; recentFailures: { code: string; credential: string; address: string }[] };
    }>(["devices", "show", deviceId, "--home", gateway.home]);
    expect(shown.device.status).toBe("revoked");
    expect(shown.device.recentFailures).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          code: "device_revoked",
          credential: "client-certificate",
          address: "127.0.0.1",
        }),
      ]),
    );
  });
});

describe("the credential", () => {
  it("9. an expired certificate from the gateway's CA: cert_expired at auth; node register re-issues it at once", async () => {
    const { home, deviceId } = await registeredNode(gateway, "sleeper");
    const ca = await loadCertificateAuthority(
      readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8"),
      readFileSync(path.join(gateway.home, "pki/ca.key"), "utf8"),
    );
    const keys = await importKeyPairPem(readFileSync(path.join(home, "device.key"), "utf8"));
    const identity = identityOfSpki(await spkiOf(keys.publicKey));
    expect(identity.deviceId).toBe(deviceId);
    const expired = await issueClientCertificate(ca, {
      publicKey: keys.publicKey,
      deviceId: identity.deviceId,
      now: new Date(Date.now() - 2 * 86_400_000),
      ttlMs: 3_600_000,
    });
    writeFileSync(path.join(home, "device.pem"), expired.pem);

    const run = await testConnection("9 auth: certificate expired", home);
    const { description } = expectFailure(run, "auth", "cert_expired");
    expect(description).toContain(deviceId);
    expect(description).toContain("still approved, so a new certificate can be issued");

    // The fix the hint names: register again with the same key; no admin, no waiting.
    // No admin approves anything here: a register that waited for approval would hit the time limit.
    const again = await runCli([...nodeRegisterArgs(gateway, home), "--json"], { timeoutMs: 20_000 });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ deviceId, status: "approved" });
    const renewed = new X509Certificate(readFileSync(path.join(home, "device.pem")));
    expect(new Date(renewed.validTo).getTime()).toBeGreaterThan(Date.now());
    expect(renewed.serialNumber).not.toBe(new X509Certificate(expired.pem).serialNumber);
    const fixed = await testConnection("9 after re-register", home);
    expect(fixed.exit, JSON.stringify(fixed.result, null, 2)).toBe(0);
    expect(fixed.result.ok).toBe(true);
  });

  it("10. a token minted by another gateway: wrong_audience at auth", async () => {
    const created = await runJson<{ apiKey: string }>([
      "keys",
      "create",
      "--name",
      "x",
      "--role",
      "node",
      "--home",
      other.home,
    ]);
    const keyFile = path.join(path.dirname(tempHome("key")), "other.key");
    writeFileSync(keyFile, created.apiKey + "\n", { mode: 0o600 });
    const minted = await runCli(["token", "--api-key-file", keyFile, "--home", other.home]);
    expect(minted.code, minted.stderr).toBe(0);
    const token = minted.stdout.trim();
    expect(jose.decodeJwt(token).aud).toBe(gatewayIdOf(other));

    const run = await testConnection("10 auth: token of another gateway", healthy.home, ["--token", token]);
    expectFailure(run, "auth", "wrong_audience");
  });

  it("11. a malformed token: invalid_token at auth; an expired one: token_expired at auth", async () => {
    const garbage = await testConnection("11a auth: garbage token", healthy.home, ["--token", "garbage"]);
    expectFailure(garbage, "auth", "invalid_token");

    const now = Math.floor(Date.now() / 1000);
    const token = await signWithGatewayKey(gateway, {
      sub: "key:whatever",
      iat: now - 7200,
      exp: now - 3600,
    });
    const expired = await testConnection("11b auth: expired token", healthy.home, ["--token", token]);
    expectFailure(expired, "auth", "token_expired");
  });
});

/** libfaketime's wrapper, if installed (CI installs it); case 12 is skipped without it. */
const faketime = (process.env.PATH ?? "")
  .split(path.delimiter)
  .concat("/usr/bin")
  .map((dir) => path.join(dir, "faketime"))
  .find((file) => existsSync(file));
if (!faketime) {
  console.warn(
    "faketime (libfaketime) is not installed: skipping case 12 (clock_skew); install it with `apt-get install faketime`",
  );
}

describe("the clock", () => {
  it.skipIf(!faketime)(
    "12. a gateway 10 minutes ahead (libfaketime; skipped if faketime is not installed): clock_skew at clock",
    async () => {
      const home = tempHome("gateway-ahead");
      const port = await freePort();
      const init = await runJson<{ caFingerprint: string; url: string; gatewayId: string }>([
        "gateway",
        "init",
        "--home",
        home,
        "--listen",
        `127.0.0.1:${port}`,
      ]);
      // Its own process group: faketime forks the gateway, and both must go at the end.
      const child = spawn(
        faketime!,
        ["-f", "+600s", process.execPath, CLI, "gateway", "start", "--home", home],
        {
          stdio: ["ignore", "pipe", "pipe"],
          detached: true,
        },
      );
      const ahead = new Running(child);
      const killGroup = () => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      };
      const skewed: TestGateway = {
        home,
        url: init.url,
        port,
        caFingerprint: init.caFingerprint,
        process: ahead,
        stop: async () => {
          killGroup();
          await ahead.exited;
        },
        restart: async () => {
          throw new Error("not needed");
        },
      };
      try {
        const deadline = Date.now() + 20_000;
        while (!(await probeHealth(init.url))) {
          if (Date.now() > deadline)
            throw new Error(`the faketime gateway did not start\n${ahead.stdout}\n${ahead.stderr}`);
          await sleep(100);
        }
        // Registration works despite the skew; only the diagnostics name it.
        const { home: nodeHome } = await registeredNode(skewed, "behind");
        const run = await testConnection("12 clock: gateway 600 s ahead", nodeHome);
        const { description } = expectFailure(run, "clock", "clock_skew");
        expect(description).toContain("behind");
        expect(description).toMatch(/\b(59\d|60\d)(\.\d)? s\b/);
      } finally {
        await skewed.stop();
      }
    },
  );
});

describe("the node's own config", () => {
  it("13a. an empty home: config_missing at config, naming node.json", async () => {
    const home = tempHome("empty");
    const run = await testConnection("13a config: missing", home);
    const { description } = expectFailure(run, "config", "config_missing");
    expect(description).toContain(path.join(home, "node.json"));
    expect(run.result.gatewayUrl).toBeNull();
  });

  it("13b. an unknown key in node.json: config_invalid naming the key and the file", async () => {
    const home = tempHome("typo");
    mkdirSync(home, { recursive: true });
    const file = path.join(home, "node.json");
    writeFileSync(
      file,
      JSON.stringify({
        gatewayURL: gateway.url,
        gatewayUrl: gateway.url,
        caFingerprint: gateway.caFingerprint,
      }),
    );
    const run = await testConnection("13b config: unknown key", home);
    const { description } = expectFailure(run, "config", "config_invalid");
    expect(description).toContain('"gatewayURL"');
    expect(description).toContain(file);
  });

  it("13c. node.json that is not JSON: config_invalid", async () => {
    const home = tempHome("broken");
    mkdirSync(home, { recursive: true });
    const file = path.join(home, "node.json");
    writeFileSync(file, `{ "gatewayUrl": "${gateway.url}", `);
    const run = await testConnection("13c config: invalid JSON", home);
    const { description } = expectFailure(run, "config", "config_invalid");
    expect(description).toContain(file);
    expect(description).toContain("not valid JSON");
  });
});
