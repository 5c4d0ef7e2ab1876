import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  listDevices,
  nodeRegisterArgs,
  runCli,
  runJson,
  spawnCli,
  startRegistration,
  tempHome,
} from "./harness.js";
import { gatewayForFile } from "./file-gateway.js";
import { shortLifetimes } from "./short-lifetimes.js";

// Where the product's contract had gaps a user meets: hints that point at the wrong command,
// a denied home misnamed, `--json` that hides the user code, a bare `gatehouse` that exits 0, a
// name the gateway changed but the node never learnt, and an API key's LAST USED left blank.

// An enroll token that expires within the test (`--expires 1s`) is a lifetime under a minute.
const gateway = gatewayForFile({ configure: shortLifetimes({}) });

interface ErrorJson {
  error: string;
  error_description: string;
  hint: string;
}

function registerArgs(home: string, name: string): string[] {
  return nodeRegisterArgs(gateway, home, { name });
}

async function enrollToken(...flags: string[]): Promise<{ token: string; tokenId: string }> {
  const created = await runJson<{ token: string; enrollToken: { tokenId: string } }>([
    "enroll",
    "create",
    "--home",
    gateway.home,
    ...flags,
  ]);
  return { token: created.token, tokenId: created.enrollToken.tokenId };
}

describe("enroll-token refusals point at `enroll create`", () => {
  it("an unknown token", async () => {
    const result = await runCli([
      ...registerArgs(tempHome("gap-unknown"), "unknown-token"),
      "--enroll-token",
      "ghe_" + "b".repeat(40),
      "--json",
    ]);
    expect(result.code).toBe(1);
    const body = JSON.parse(result.stdout) as ErrorJson;
    expect(body.error).toBe("invalid_token");
    expect(body.hint).toContain("gatehouse enroll create");
    expect(body.hint).not.toContain("gatehouse token");
  });

  it("a spent single-use token says it was single-use and already used", async () => {
    const { token, tokenId } = await enrollToken();
    const first = await runCli([
      ...registerArgs(tempHome("gap-spent-1"), "spent-1"),
      "--enroll-token",
      token,
      "--json",
    ]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const second = await runCli([
      ...registerArgs(tempHome("gap-spent-2"), "spent-2"),
      "--enroll-token",
      token,
    ]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain("invalid_token");
    expect(second.stderr).toContain(tokenId);
    expect(second.stderr).toMatch(/single-use.*already used/);
    expect(second.stderr).toContain("gatehouse enroll create");
    expect(second.stderr).not.toContain("gatehouse token");
  });

  it("an expired token says when it expired", async () => {
    const { token, tokenId } = await enrollToken("--expires", "1s");
    await sleep(1500);
    const result = await runCli([
      ...registerArgs(tempHome("gap-expired"), "expired-token"),
      "--enroll-token",
      token,
      "--json",
    ]);
    expect(result.code).toBe(1);
    const body = JSON.parse(result.stdout) as ErrorJson;
    expect(body.error).toBe("token_expired");
    expect(body.error_description).toContain(tokenId);
    expect(body.error_description).toMatch(/expired at \d{4}-\d\d-\d\dT/);
    expect(body.hint).toContain("gatehouse enroll create");
    expect(body.hint).not.toContain("gatehouse token");
  });
});

describe("node start on a home without a certificate names the registration's state", () => {
  it("denied: device_denied, not config_missing … device.pem", async () => {
    const { home, register, device } = await startRegistration(gateway, "denied-home");
    const denied = await runCli(["devices", "deny", device.deviceId, "--home", gateway.home]);
    expect(denied.code).toBe(0);
    expect(await register.exited).toBe(1);
    const start = await runCli(["node", "start", "--home", home, "--json"]);
    expect(start.code).toBe(1);
    const body = JSON.parse(start.stdout) as ErrorJson;
    expect(body.error).toBe("device_denied");
    expect(body.error_description).toContain(device.deviceId);
    expect(body.error_description).not.toContain("device.pem");
  });

  it("denied, gateway unreachable: the home remembers the denial", async () => {
    const { home, register, device } = await startRegistration(gateway, "denied-offline");
    await runJson(["devices", "deny", device.deviceId, "--home", gateway.home]);
    expect(await register.exited).toBe(1);
    // Point the home at a port where nothing listens: the answer comes from the home alone.
    const file = path.join(home, "node.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...config, gatewayUrl: "https://127.0.0.1:9" }));
    const start = await runCli(["node", "start", "--home", home]);
    expect(start.code).toBe(1);
    expect(start.stderr).toContain("device_denied");
  });

  it("pending: device_pending with the user code", async () => {
    const { home, register, device } = await startRegistration(gateway, "pending-home");
    try {
      const start = await runCli(["node", "start", "--home", home]);
      expect(start.code).toBe(1);
      expect(start.stderr).toContain("device_pending");
      expect(start.stderr).toContain(`gatehouse devices approve ${device.userCode}`);
    } finally {
      register.child.kill("SIGTERM");
      await register.exited;
    }
  });
});

describe("node register --json is JSON Lines", () => {
  it("prints the pending document while it waits, then the final one", async () => {
    const home = tempHome("gap-jsonl");
    const register = spawnCli([...registerArgs(home, "jsonl"), "--json"]);
    await register.waitFor(() => register.stdout.includes("\n"), "the pending line");
    const pending = JSON.parse(register.stdout.split("\n")[0]!) as Record<string, string>;
    expect(pending).toMatchObject({
      status: "pending",
      requestId: expect.stringMatching(/^req_/),
      deviceId: expect.any(String),
      userCode: expect.stringMatching(/^[B-Z]{4}-[B-Z]{4}$/),
      keyFingerprint: expect.stringMatching(/^sha256:/),
      expiresAt: expect.any(String),
    });
    // A script approves with the code it read from the first line.
    await runJson(["devices", "approve", pending.userCode!, "--home", gateway.home]);
    expect(await register.exited).toBe(0);
    const lines = register.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1]!)).toMatchObject({ status: "approved", deviceId: pending.deviceId });
  });

  it("says so in its help", async () => {
    const help = await runCli(["node", "register", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/JSON Lines/);
  });
});

describe("audit export", () => {
  it("is JSON Lines, and one document with --json; its help says which", async () => {
    const lines = await runCli(["audit", "export", "--home", gateway.home]);
    expect(lines.code).toBe(0);
    const entries = lines.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { seq: number });
    expect(entries.length).toBeGreaterThan(1);

    const document = await runCli(["audit", "export", "--home", gateway.home, "--json"]);
    expect(document.code).toBe(0);
    const parsed = JSON.parse(document.stdout) as { entries: { seq: number }[] };
    expect(parsed.entries.slice(0, entries.length).map((e) => e.seq)).toEqual(entries.map((e) => e.seq));

    const help = await runCli(["audit", "export", "--help"]);
    expect(help.stdout).toMatch(/JSON Lines/);
    expect(help.stdout).toMatch(/--json.*one (JSON )?document/s);
  });
});

describe("wrong usage exits 2", () => {
  it("a bare `gatehouse` and a bare command group", async () => {
    for (const args of [[], ["node"]]) {
      const result = await runCli(args);
      expect(result.code, `gatehouse ${args.join(" ")}`).toBe(2);
      expect(result.stderr).toContain("Usage: gatehouse");
    }
    const json = await runCli(["--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: "invalid_request" });
    // Asking for help is not wrong usage.
    for (const args of [["--help"], ["help"], ["node", "--help"]])
      expect((await runCli(args)).code, `gatehouse ${args.join(" ")}`).toBe(0);
  });
});

describe("--name-prefix", () => {
  it("the name the gateway gave reaches node.json and is printed", async () => {
    const { token } = await enrollToken("--name-prefix", "ci-");
    const home = tempHome("gap-prefix");
    const result = await runCli([...registerArgs(home, "runner"), "--enroll-token", token]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("ci-runner");
    const config = JSON.parse(readFileSync(path.join(home, "node.json"), "utf8")) as { name: string };
    expect(config.name).toBe("ci-runner");
    expect((await listDevices(gateway)).some((d) => d.name === "ci-runner")).toBe(true);

    const json = await runCli([
      ...registerArgs(tempHome("gap-prefix-json"), "runner-2"),
      "--enroll-token",
      (await enrollToken("--name-prefix", "ci-")).token,
      "--json",
    ]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: "approved", name: "ci-runner-2" });
  });
});

describe("keys list", () => {
  it("LAST USED is right after a use", async () => {
    const created = await runJson<{ key: { keyId: string; prefix: string }; apiKey: string }>([
      "keys",
      "create",
      "--name",
      "last-used",
      "--role",
      "viewer",
      "--home",
      gateway.home,
    ]);
    const keyFile = path.join(path.dirname(gateway.home), "last-used.key");
    writeFileSync(keyFile, created.apiKey, { mode: 0o600 });
    const before = new Date().toISOString();
    const token = await runCli(["token", "--api-key-file", keyFile, "--home", gateway.home]);
    expect(token.code, token.stderr).toBe(0);

    const { keys } = await runJson<{ keys: { keyId: string; lastUsedAt: string | null }[] }>([
      "keys",
      "list",
      "--home",
      gateway.home,
    ]);
    const used = keys.find((k) => k.keyId === created.key.keyId);
    expect(used?.lastUsedAt).not.toBeNull();
    expect(used!.lastUsedAt! >= before).toBe(true);

    const text = await runCli(["keys", "list", "--home", gateway.home]);
    const row = text.stdout.split("\n").find((line) => line.startsWith(created.key.prefix));
    expect(row).toMatch(/ago$/);
  });
});
