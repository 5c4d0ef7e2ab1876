import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import WebSocket from "ws";
import {
  cleanupAll,
  listDevices,
  nodeRegisterArgs,
  registeredNode,
  runCli,
  runJson,
  spawnCli,
  startRegistration,
  startTestGateway,
  tempHome,
} from "./harness.js";

afterAll(cleanupAll);

interface NodeJson {
  deviceId: string;
  online: boolean;
  platform: string;
  version: string;
}

describe("the README walkthrough, with the real CLI", () => {
  it("registers a node, approves it by code, sees it online, revokes it and closes its session with 4403", async () => {
    const gateway = await startTestGateway();

    // Register from a second home; the admin sees it pending with its user code.
    const { home: nodeHome, register, device } = await startRegistration(gateway, "laptop");
    expect(device.status).toBe("pending");
    expect(device.userCode).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    await register.waitFor(() => register.stdout.includes(device.userCode!), "the user code on the node");

    // Approve by code, lower case and all: the waiting register command finishes.
    const approved = await runJson<{ device: { status: string; certExpiresAt: string } }>([
      "devices",
      "approve",
      device.userCode!.toLowerCase(),
      "--home",
      gateway.home,
    ]);
    expect(approved.device.status).toBe("approved");
    expect(await register.exited).toBe(0);
    expect(register.stdout).toContain("Approved");
    for (const file of ["device.key", "node.json"]) {
      expect(statSync(path.join(nodeHome, file)).mode & 0o777).toBe(0o600);
    }
    expect(statSync(nodeHome).mode & 0o777).toBe(0o700);
    const nodeConfig = JSON.parse(readFileSync(path.join(nodeHome, "node.json"), "utf8")) as Record<
      string,
      unknown
    >;
    expect(nodeConfig).toMatchObject({
      gatewayUrl: gateway.url,
      caFingerprint: gateway.caFingerprint,
      deviceId: device.deviceId,
    });

    // The node connects over mutual TLS and shows up online.
    const node = spawnCli(["node", "start", "--home", nodeHome]);
    await node.waitFor(() => node.logLines().some((l) => l.state === "connected"), "the node to connect");
    const { nodes } = await runJson<{ nodes: NodeJson[] }>(["nodes", "list", "--home", gateway.home]);
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ deviceId: device.deviceId, online: true, version: "0.1.0" });
    expect((await listDevices(gateway)).find((d) => d.deviceId === device.deviceId)?.online).toBe(true);

    // Revoke: the live session is closed with 4403 device_revoked, and the node cannot come back.
    const revoked = await runJson<{ sessionsClosed: number }>([
      "devices",
      "revoke",
      device.deviceId,
      "--home",
      gateway.home,
    ]);
    expect(revoked.sessionsClosed).toBe(1);
    await node.waitFor(() => node.stderr.includes("device_revoked"), "the node to see its session closed");
    expect(node.stderr).toContain("4403 device_revoked");
    expect(await node.exited).toBe(1);
    const after = await runJson<{ nodes: NodeJson[] }>(["nodes", "list", "--home", gateway.home]);
    expect(after.nodes).toHaveLength(0);

    // A reconnect attempt with the revoked certificate gets an HTTP 403 with the code, not a bare close.
    const refusal = await upgradeWith(gateway.url, nodeHome);
    expect(refusal).toEqual({ status: 403, error: "device_revoked" });

    // The same key cannot register again; a new key can, as a new device that needs approval.
    const sameKey = await runCli(nodeRegisterArgs(gateway, nodeHome));
    expect(sameKey.code).toBe(1);
    expect(sameKey.stderr).toContain("device_revoked");
    const fresh = spawnCli([...nodeRegisterArgs(gateway, nodeHome, { name: "laptop-2" }), "--new-key"]);
    await fresh.waitFor(() => fresh.stdout.includes("User code:"), "the new registration");
    const pending = await listDevices(gateway, true);
    expect(pending.map((d) => d.name)).toEqual(["laptop-2"]);
    expect(pending[0]!.deviceId).not.toBe(device.deviceId);
    fresh.child.kill("SIGTERM");
    await gateway.stop();
  });

  it("a denied registration makes node register exit 1 with the reason", async () => {
    const gateway = await startTestGateway();
    const { register, device } = await startRegistration(gateway, "stranger");
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
    expect(register.stderr).toContain("device_denied");
    expect(register.stderr).toContain("not one of ours");
    await gateway.stop();
  });

  it("a node pinned to another CA fingerprint sends nothing", async () => {
    const gateway = await startTestGateway();
    const home = tempHome("node");
    const wrongPin = "sha256:" + "ab".repeat(32);
    const result = await runCli(nodeRegisterArgs(gateway, home, { fingerprint: wrongPin, name: "n1" }));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ca_mismatch");
    expect(result.stderr).toContain(gateway.caFingerprint);
    expect(await listDevices(gateway, true)).toHaveLength(0);
    await gateway.stop();
  });

  it("wrong usage exits 2 and a missing node home exits 1 with config_missing", async () => {
    const usage = await runCli(["node", "register", "--name", "x"]);
    expect(usage.code).toBe(2);
    const badPin = await runCli([
      "node",
      "register",
      "--gateway",
      "https://127.0.0.1:1",
      "--ca-fingerprint",
      "abc",
    ]);
    expect(badPin.code).toBe(2);
    expect(badPin.stderr).toContain("--ca-fingerprint");
    const badUrl = await runCli([
      "node",
      "register",
      "--gateway",
      "http://x:1",
      "--ca-fingerprint",
      "sha256:" + "a".repeat(64),
    ]);
    expect(badUrl.code).toBe(2);
    // A wrong --listen leaves nothing behind, so the same command with a good one works.
    const home = tempHome("init");
    expect((await runCli(["gateway", "init", "--home", home, "--listen", "nonsense"])).code).toBe(2);
    expect(
      (await runCli(["gateway", "init", "--home", home, "--listen", "127.0.0.1:18999", "--json"])).code,
    ).toBe(0);
    const missing = await runCli(["node", "start", "--home", tempHome("empty")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("config_missing");
  });

  it("an approval acknowledged to the admin survives kill -9 of the gateway", async () => {
    const gateway = await startTestGateway();
    const { register, device } = await startRegistration(gateway, "durable");
    const approve = await runCli(["devices", "approve", device.userCode!, "--home", gateway.home]);
    expect(approve.code).toBe(0);
    await gateway.stop(true);
    await gateway.restart();
    const shown = await runJson<{ device: { status: string; certExpiresAt: string | null } }>([
      "devices",
      "show",
      device.deviceId,
      "--home",
      gateway.home,
    ]);
    expect(shown.device.status).toBe("approved");
    expect(shown.device.certExpiresAt).not.toBeNull();
    // The waiting node rides out the restart and receives its certificate.
    expect(await register.exited).toBe(0);
    await gateway.stop();
  });

  it("a registered node reconnects after the gateway restarts", async () => {
    const gateway = await startTestGateway();
    const { home } = await registeredNode(gateway, "sturdy");
    const node = spawnCli(["node", "start", "--home", home]);
    await node.waitFor(
      () => node.logLines().filter((l) => l.state === "connected").length === 1,
      "first session",
    );
    await gateway.stop();
    await node.waitFor(() => node.logLines().some((l) => l.state === "backoff"), "the node to back off");
    await gateway.restart();
    await node.waitFor(
      () => node.logLines().filter((l) => l.state === "connected").length === 2,
      "the second session",
      30_000,
    );
    node.child.kill("SIGTERM");
    expect(await node.exited).toBe(0);
    await gateway.stop();
  });
});

/** Opens the node session with a node home's credentials; returns the HTTP refusal, if any. */
export function upgradeWith(
  url: string,
  nodeHome: string,
): Promise<{ status: number; error: string } | "open"> {
  const read = (name: string) => readFileSync(path.join(nodeHome, name), "utf8");
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace("https:", "wss:") + "/api/v1/connect", {
      ca: read("ca.pem"),
      key: read("device.key"),
      cert: read("device.pem"),
    });
    socket.on("unexpected-response", (_req, response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, error: (JSON.parse(body) as { error: string }).error }),
      );
    });
    socket.on("open", () => {
      socket.close();
      resolve("open");
    });
    socket.on("error", reject);
  });
}
