import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import {
  cleanupAll,
  registeredNode,
  runCli,
  runJson,
  spawnCli,
  startTestGateway,
  tempHome,
  type Running,
} from "./harness.js";
import { apiKeyNodeHome } from "./api-keys.js";
import { nodesList, statesSinceConnected, waitConnected } from "./lifecycle-fixtures.js";

afterAll(cleanupAll);

/** Long enough for a session closed by an overflowing timer (1 ms after it opens) to show. */
const WATCH_MS = 4000;

function certificateCount(gatewayHome: string, deviceId: string): number {
  const db = new Database(path.join(gatewayHome, "gatehouse.db"), { readonly: true });
  try {
    const row = db.prepare("select count(*) as n from certificates where device_id = ?").get(deviceId) as {
      n: number;
    };
    return row.n;
  } finally {
    db.close();
  }
}

/** The agent's own words about a session that ended or a credential that ran out. */
function troubles(node: Running): string[] {
  return node
    .logLines()
    .map((line) => String(line.msg))
    .filter((msg) => /cert_expired|token_expired|backoff|re-issue/.test(msg));
}

describe("lifetimes longer than a timer holds (24.8 days)", () => {
  it("keeps a node's session open with a 30-day client certificate", { timeout: 120_000 }, async () => {
    const gateway = await startTestGateway({
      configure: (config) => (config.certificates = { clientTtl: "30d" }),
    });
    try {
      const { home, deviceId } = await registeredNode(gateway, "monthly");
      const issued = certificateCount(gateway.home, deviceId);
      const node = spawnCli(["node", "start", "--home", home]);
      await waitConnected(node);
      await sleep(WATCH_MS);
      // Still the one session: no 4401 cert_expired, no re-issue loop, no new certificates.
      expect(statesSinceConnected(node)).toEqual(["connected"]);
      expect(troubles(node)).toEqual([]);
      expect(certificateCount(gateway.home, deviceId)).toBe(issued);
      expect((await nodesList(gateway)).map((n) => n.deviceId)).toEqual([deviceId]);
      expect(node.stderr).not.toContain("TimeoutOverflowWarning");
      node.child.kill("SIGTERM");
      await node.exited;
    } finally {
      await gateway.stop();
    }
  });

  it("keeps an API-key node's session open with 30-day access tokens", { timeout: 120_000 }, async () => {
    const gateway = await startTestGateway({
      configure: (config) => (config.tokens = { accessTtl: "30d" }),
    });
    try {
      const { home, env } = await apiKeyNodeHome(gateway, {
        keyName: "monthly-runner",
        homePrefix: "long-token-node",
        variable: "GH_NODE_API_KEY",
      });
      const node = spawnCli(["node", "start", "--home", home], env);
      await waitConnected(node);
      await sleep(WATCH_MS);
      expect(statesSinceConnected(node)).toEqual(["connected"]);
      expect(troubles(node)).toEqual([]);
      // Nothing refreshed early: a 30-day token is refreshed after 20 days, not at once.
      expect(node.logLines().filter((line) => line.msg === "access token refreshed")).toEqual([]);
      expect(node.stderr).not.toContain("TimeoutOverflowWarning");
      node.child.kill("SIGTERM");
      await node.exited;
    } finally {
      await gateway.stop();
    }
  });
});

describe("lifetimes that make no sense are refused", () => {
  for (const value of ["30s", "0.5m"]) {
    it(`refuses certificates.clientTtl "${value}", naming the key and the value`, async () => {
      const home = tempHome("short-ttl");
      await runJson(["gateway", "init", "--home", home, "--listen", "127.0.0.1:18998"]);
      const file = path.join(home, "gateway.json");
      const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      config.certificates = { clientTtl: value };
      writeFileSync(file, JSON.stringify(config, null, 2));

      const explained = await runCli(["config", "explain", "--home", home, "--json"]);
      expect(explained.code).toBe(1);
      const body = JSON.parse(explained.stdout) as { error: string; error_description: string };
      expect(body.error).toBe("config_invalid");
      expect(body.error_description).toContain("certificates.clientTtl");
      expect(body.error_description).toContain(`"${value}"`);
      expect(body.error_description).toContain("at least 1m");

      const start = await runCli(["gateway", "start", "--home", home, "--json"]);
      expect(start.code).toBe(1);
      expect(start.stdout + start.stderr).toContain("config_invalid");
      expect(start.stdout + start.stderr).toContain("certificates.clientTtl");
    });
  }

  it("accepts seconds only with GATEHOUSE_ALLOW_SHORT_LIFETIMES=1, and then says so everywhere", async () => {
    const home = tempHome("short-ttl-escape");
    await runJson(["gateway", "init", "--home", home, "--listen", "127.0.0.1:18997"]);
    const file = path.join(home, "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    config.certificates = { clientTtl: "30s" };
    writeFileSync(file, JSON.stringify(config, null, 2));
    const env = { ...process.env, GATEHOUSE_ALLOW_SHORT_LIFETIMES: "1" };

    const explained = await runCli(["config", "explain", "--home", home], { env });
    expect(explained.code, explained.stderr).toBe(0);
    expect(explained.stdout).toMatch(/certificates\.clientTtl\s+30s/);
    expect(explained.stdout).toContain("GATEHOUSE_ALLOW_SHORT_LIFETIMES=1 is set");

    const doctor = await runCli(["doctor", "--home", home, "--json"], { env });
    const findings = (
      JSON.parse(doctor.stdout) as { sections: { findings: { check: string; severity: string }[] }[] }
    ).sections.flatMap((section) => section.findings);
    expect(findings).toContainEqual(
      expect.objectContaining({ check: "short-lifetimes", severity: "warning" }),
    );

    // Any other value is no escape.
    const other = await runCli(["config", "explain", "--home", home], {
      env: { ...process.env, GATEHOUSE_ALLOW_SHORT_LIFETIMES: "true" },
    });
    expect(other.code).toBe(1);
  });
});
