import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  cleanupAll,
  nodeRegisterArgs,
  registeredNode,
  runCli,
  runJson,
  spawnCli,
  startTestGateway,
  tempHome,
  type Running,
  type TestGateway,
} from "./harness.js";
import { fingerprintOf, pemBundle, testConnection } from "./lifecycle-fixtures.js";

/**
 * During a CA rotation's overlap the server certificate still chains to the previous CA while the
 * new CA signs: a node pinning either CA registers, and a node that followed the rotation still
 * recognises its own gateway.
 */
let gateway: TestGateway;
let rotation: { previousFingerprint: string; nextFingerprint: string };
let follower: { home: string; node: Running };

interface EnrollTokenJson {
  tokenId: string;
  usesLeft: number;
  usesTotal: number;
}

beforeAll(async () => {
  gateway = await startTestGateway();
  // A node registered before the rotation, connected when it starts: it follows the notice.
  const { home } = await registeredNode(gateway, "follower");
  const node = spawnCli(["node", "start", "--home", home]);
  await node.waitFor(() => node.stdout.includes('"connected"'), "the node to connect");
  follower = { home, node };
  rotation = await runJson(["rotate", "ca", "--overlap", "7d", "--home", gateway.home]);
  await node.waitFor(
    () => node.stdout.includes("followed the gateway's CA rotation"),
    "the node to follow the rotation",
  );
}, 120_000);

afterAll(async () => {
  follower.node.child.kill("SIGTERM");
  await follower.node.exited;
  await gateway.stop();
  cleanupAll();
});

async function enrollToken(): Promise<{ token: string; enrollToken: EnrollTokenJson }> {
  return runJson(["enroll", "create", "--uses", "3", "--expires", "10m", "--home", gateway.home]);
}

async function usesLeft(tokenId: string): Promise<number | undefined> {
  const list = await runJson<{ enrollTokens: EnrollTokenJson[] }>(["enroll", "list", "--home", gateway.home]);
  return list.enrollTokens.find((t) => t.tokenId === tokenId)?.usesLeft;
}

function register(home: string, fingerprint: string, name: string, token: string) {
  return runCli([...nodeRegisterArgs(gateway, home, { name, fingerprint }), "--enroll-token", token]);
}

describe("during a CA rotation's overlap", () => {
  it("registers a node pinning the previous CA, spends one use and writes device.pem", async () => {
    const created = await enrollToken();
    const home = tempHome("overlap-old");
    const result = await register(home, rotation.previousFingerprint, "pins-previous", created.token);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stderr).not.toContain("ca_mismatch");
    expect(existsSync(path.join(home, "device.pem"))).toBe(true);
    // The node trusts both CAs: the previous one vouched for the new one with its signature.
    expect(pemBundle(path.join(home, "ca.pem")).map(fingerprintOf).sort()).toEqual(
      [rotation.previousFingerprint, rotation.nextFingerprint].sort(),
    );
    expect(await usesLeft(created.enrollToken.tokenId)).toBe(2);

    const { exit, result: diagnosis } = await testConnection(home);
    expect(diagnosis.error).toBeNull();
    expect(exit).toBe(0);
  });

  it("registers a node pinning the new CA, as `rotate ca` tells new nodes to", async () => {
    const created = await enrollToken();
    const home = tempHome("overlap-new");
    const result = await register(home, rotation.nextFingerprint, "pins-next", created.token);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(existsSync(path.join(home, "device.pem"))).toBe(true);
    const config = JSON.parse(readFileSync(path.join(home, "node.json"), "utf8")) as {
      caFingerprint: string;
    };
    expect(config.caFingerprint).toBe(rotation.nextFingerprint);
    expect(await usesLeft(created.enrollToken.tokenId)).toBe(2);

    const { exit, result: diagnosis } = await testConnection(home);
    expect(diagnosis.error).toBeNull();
    expect(exit).toBe(0);
  });

  it("refuses a fingerprint that is neither CA before anything is sent, spending no use", async () => {
    const created = await enrollToken();
    const home = tempHome("overlap-foreign");
    const result = await register(home, "sha256:" + "ab".repeat(32), "pins-foreign", created.token);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ca_mismatch");
    expect(existsSync(path.join(home, "device.pem"))).toBe(false);
    expect(await usesLeft(created.enrollToken.tokenId)).toBe(3);
  });

  it("test-connection on a node that followed the rotation finds its own gateway", async () => {
    const config = JSON.parse(readFileSync(path.join(follower.home, "node.json"), "utf8")) as {
      caFingerprint: string;
    };
    expect(config.caFingerprint).toBe(rotation.nextFingerprint);
    const { exit, result } = await testConnection(follower.home);
    expect(result.layers.find((layer) => layer.layer === "tls")).toMatchObject({ ok: true });
    expect(JSON.stringify(result)).not.toContain("another Gatehouse gateway");
    expect(result.error).toBeNull();
    expect(exit).toBe(0);
  });

  it("admin commands and curl verify the gateway with the bundle admin/ca.pem", async () => {
    const bundle = path.join(gateway.home, "admin", "ca.pem");
    const listed = await runCli([
      "nodes",
      "list",
      "--home",
      gateway.home,
      "--gateway",
      gateway.url,
      "--ca-file",
      bundle,
      "--json",
    ]);
    expect(listed.code, listed.stderr).toBe(0);
    const health = execFileSync("curl", ["-sS", "--cacert", bundle, `${gateway.url}/health`], {
      encoding: "utf8",
    });
    expect(JSON.parse(health)).toMatchObject({ service: "gatehouse" });
  });
});
