/**
 * Re-issue after expiry behind a TCP load balancer: two instances of one gateway on one PostgreSQL
 * behind HAProxy in round robin (cluster-harness.ts), the real CLI and real processes. A node's
 * challenge and its answer are two connections, which the balancer sends to different instances:
 * each instance must take the other's challenge, and a challenge answers once whichever instance
 * the replay reaches. A node offline past its certificate's expiry comes back through HAProxy by
 * itself, without a refused answer.
 */
import { expect, it } from "vitest";
import { sign } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { spawnCli } from "./harness.js";
import { stopAgent } from "./agents.js";
import { httpsRequest, waitConnected } from "./lifecycle-fixtures.js";
import type { TestCluster } from "./cluster-harness.js";
import { clusterWithNodes, describeCluster, type ProxiedNode } from "./cluster-suite.js";
import { reissueProof } from "../../src/gateway/certificates.js";
import { createCsr, importKeyPairPem, issueClientCertificate } from "../../src/pki/index.js";
import { openPostgresStore } from "../../src/store/index.js";
import { keyEncryptionKey } from "../../src/auth/key-encryption.js";
import { keySettingBytes } from "../../src/config/secrets.js";
import { loadSharedCa } from "../../src/gateway/cluster/shared-material.js";

const DAY_MS = 24 * 3600_000;

describeCluster("re-issue through HAProxy in front of two instances", () => {
  let cluster: TestCluster;
  let node: ProxiedNode;
  let ca: string;
  clusterWithNodes(["reissue-node"], (started, [proxied]) => {
    cluster = started;
    node = proxied!;
    ca = readFileSync(path.join(node.home, "ca.pem"), "utf8");
  });

  /** A POST through HAProxy on a fresh connection (round robin: the next instance each time). */
  const post = (route: string, body: unknown) =>
    httpsRequest(`${cluster.proxy.url}/api/v1/certs/${route}`, { tls: { ca }, body });

  it("takes every answer to a challenge issued through the other instance, and each only once", async () => {
    const keyPem = readFileSync(path.join(node.home, "device.key"), "utf8");
    const keys = await importKeyPairPem(keyPem);
    for (let round = 0; round < 4; round++) {
      const issued = await post("challenge", { deviceId: node.deviceId });
      expect(issued.status).toBe(200);
      const { challenge } = issued.json<{ challenge: string }>();
      const answer = {
        deviceId: node.deviceId,
        challenge,
        signature: sign("sha256", reissueProof(node.deviceId, challenge), {
          key: keyPem,
          dsaEncoding: "ieee-p1363",
        }).toString("base64url"),
        csr: await createCsr(keys, node.deviceId),
      };
      const reissued = await post("reissue", answer);
      expect(reissued.status, reissued.body.toString()).toBe(200);
      // Replayed twice: once through each instance.
      for (const _ of [1, 2]) {
        const replay = await post("reissue", answer);
        expect(replay.status).toBe(400);
        expect(replay.json<{ error_description: string }>().error_description).toMatch(/already been used/);
      }
    }
  });

  it("brings a node offline past its certificate's expiry back through HAProxy, still approved", async () => {
    await stopAgent(node.agent);
    // Its certificate (a day's life, issued two days ago) ran out yesterday: made with the shared
    // CA, which only the database holds, sealed under the key-encryption key.
    const store = await openPostgresStore(cluster.postgres.url);
    const sharedCa = await loadSharedCa(
      store,
      keyEncryptionKey(
        keySettingBytes(cluster.env.GATEHOUSE_KEY_ENCRYPTION_KEY!),
        "GATEHOUSE_KEY_ENCRYPTION_KEY",
      ),
      "the test database",
    ).finally(() => store.close());
    const keys = await importKeyPairPem(readFileSync(path.join(node.home, "device.key"), "utf8"));
    const expired = await issueClientCertificate(sharedCa, {
      publicKey: keys.publicKey,
      deviceId: node.deviceId,
      now: new Date(Date.now() - 2 * DAY_MS),
      ttlMs: DAY_MS,
    });
    writeFileSync(path.join(node.home, "device.pem"), expired.pem.trimEnd() + "\n");

    node.agent = spawnCli(["node", "start", "--home", node.home], cluster.env);
    await waitConnected(node.agent, 1, 60_000);
    const lines = node.agent.logLines();
    expect(lines.some((line) => line.msg === "certificate re-issued")).toBe(true);
    // Recovered at the first answer: none was refused on the way.
    expect(JSON.stringify(lines)).not.toMatch(/not issued by this gateway|already been used/);
    const { devices } = await cluster.json<{ devices: { deviceId: string; status: string }[] }>([
      "devices",
      "list",
      "--home",
      cluster.instances[1].home,
    ]);
    expect(devices.find((d) => d.deviceId === node.deviceId)?.status).toBe("approved");
  });
});
