import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cleanupAll, runCli, runJson, spawnCli, startTestGateway, tempHome } from "./harness.js";
import { apiKeyNodeHome } from "./api-keys.js";
import { nodesList, waitConnected, waitForMsg, withState } from "./lifecycle-fixtures.js";
import { ACCESS_TOKEN_SECONDS, renewalAfter, shortLifetimes } from "./short-lifetimes.js";

afterAll(cleanupAll);

describe("a node without a client certificate, on an API key behind a reference", () => {
  it(
    "connects, keeps its session across token expiries, runs commands, and is cut off when its key is revoked",
    { timeout: 180_000 },
    async () => {
      // Short access tokens: the session must outlive several of them by refreshing on the session.
      const gateway = await startTestGateway({
        configure: shortLifetimes({ accessToken: ACCESS_TOKEN_SECONDS }),
      });
      const { home, apiKey, keyId, subject, env } = await apiKeyNodeHome(gateway, {
        keyName: "ci-runner",
        homePrefix: "api-node",
        variable: "GH_NODE_API_KEY",
        config: { exec: { allow: ["uname"] } },
      });

      const node = spawnCli(["node", "start", "--home", home], env);
      await waitConnected(node);
      // ca.pem was fetched once, by the pinned fingerprint.
      expect(existsSync(path.join(home, "ca.pem"))).toBe(true);
      expect((await nodesList(gateway)).map((n) => n.deviceId)).toEqual([subject]);

      await waitForMsg(
        node,
        "access token refreshed",
        3,
        (3 * renewalAfter(ACCESS_TOKEN_SECONDS) + 20) * 1000,
      );
      expect(withState(node, "connected")).toHaveLength(1);
      expect(withState(node, "backoff")).toHaveLength(0);
      expect(node.stdout + node.stderr).not.toContain(apiKey);

      const ran = await runCli(["nodes", "exec", subject, "--home", gateway.home, "--", "uname"]);
      expect(ran.code, ran.stderr).toBe(0);
      expect(ran.stdout.length).toBeGreaterThan(0);

      const check = await runCli(["node", "test-connection", "--home", home, "--json"], { env });
      expect(check.code, check.stdout).toBe(0);
      const layers = (JSON.parse(check.stdout) as { layers: { layer: string; detail: string }[] }).layers;
      expect(layers.find((l) => l.layer === "auth")?.detail).toBe(`access token for ${subject}`);
      expect(check.stdout).not.toContain(apiKey);

      const doctor = await runCli(["doctor", "--home", home, "--json"], { env });
      expect(doctor.code, doctor.stdout).toBe(0);
      expect(doctor.stdout).toContain("authenticates with its API key");

      // Revoking the key ends it: the session closes when its token runs out, and no new token comes.
      await runJson(["keys", "revoke", keyId, "--home", gateway.home]);
      await node.waitFor(
        () => withState(node, "backoff").some((l) => String(l.reason).includes("invalid_token")),
        "a backoff naming invalid_token",
        (ACCESS_TOKEN_SECONDS + 30) * 1000,
      );
      node.child.kill("SIGTERM");
      await node.exited;
      await gateway.stop();
    },
  );

  it("names a reference that does not resolve, and reports a plaintext key", async () => {
    const home = tempHome("api-node-bad");
    mkdirSync(home, { recursive: true, mode: 0o700 });
    const config = {
      gatewayUrl: "https://127.0.0.1:9",
      caFingerprint: "sha256:" + "1".repeat(64),
      apiKey: "env://GH_NODE_KEY_NOT_SET",
    };
    writeFileSync(path.join(home, "node.json"), JSON.stringify(config), { mode: 0o600 });
    const start = await runCli(["node", "start", "--home", home]);
    expect(start.code).toBe(1);
    expect(start.stderr).toContain("config_invalid: apiKey: secret env://GH_NODE_KEY_NOT_SET");

    const plaintext = "ghk_abcdefgh" + "k7m2p9q4r8s3t6v1w5x0y2z7a4b9c3d8e1f6g0h5";
    writeFileSync(path.join(home, "node.json"), JSON.stringify({ ...config, apiKey: plaintext }), {
      mode: 0o600,
    });
    const doctor = await runCli(["doctor", "--home", home]);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toMatch(/! plaintext-secret\s+apiKey holds a plaintext secret/);
    expect(doctor.stdout).not.toContain(plaintext);
  });
});
