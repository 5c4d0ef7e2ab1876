import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { listDevices, runCli, runJson, tempHome } from "./harness.js";
import { gatewayForFile } from "./file-gateway.js";

const gateway = gatewayForFile();

function register(name: string, token: string | undefined, env: NodeJS.ProcessEnv = process.env) {
  const args = ["node", "register", "--home", tempHome("enr-node"), "--gateway", gateway.url];
  args.push("--ca-fingerprint", gateway.caFingerprint, "--name", name, "--json");
  if (token) args.push("--enroll-token", token);
  return runCli(args, { env, timeoutMs: 20_000 });
}

interface EnrollTokenJson {
  tokenId: string;
  usesLeft: number;
  usesTotal: number;
  source: string;
}

describe("enroll tokens", () => {
  it("approve registrations at once while uses are left, then refuse with a code", async () => {
    const created = await runJson<{ token: string; enrollToken: EnrollTokenJson }>([
      "enroll",
      "create",
      "--uses",
      "2",
      "--expires",
      "10m",
      "--name-prefix",
      "ci-",
      "--home",
      gateway.home,
    ]);
    expect(created.token).toMatch(/^ghe_[a-z2-7]{40}$/);

    for (const name of ["runner-1", "runner-2"]) {
      const result = await register(name, created.token);
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ status: "approved" });
    }
    const devices = await listDevices(gateway);
    expect(
      devices
        .filter((d) => d.kind === "node" && d.status === "approved")
        .map((d) => d.name)
        .sort(),
    ).toEqual(["ci-runner-1", "ci-runner-2"]);
    expect(await listDevices(gateway, true)).toEqual([]);

    const third = await register("runner-3", created.token);
    expect(third.code).toBe(1);
    expect(JSON.parse(third.stdout)).toMatchObject({
      error: "invalid_token",
      error_description: expect.stringContaining("no uses left"),
    });
    const forged = "ghe_" + "a".repeat(40);
    const unknown = await register("runner-4", forged);
    expect(JSON.parse(unknown.stdout)).toMatchObject({ error: "invalid_token" });
    // Each refusal is audited with the kind of credential and its fingerprint prefix, never the token.
    const audit = await runCli(["audit", "tail", "-n", "50", "--home", gateway.home, "--json"]);
    const refusals = (
      JSON.parse(audit.stdout) as { entries: { type: string; details: Record<string, string> }[] }
    ).entries.filter((e) => e.type === "auth.refused" && e.details.credential === "enroll-token");
    expect(refusals.length).toBeGreaterThanOrEqual(2);
    expect(refusals.at(-1)!.details.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(audit.stdout).not.toContain(forged);
    expect(audit.stdout).not.toContain(created.token);

    const list = await runJson<{ enrollTokens: EnrollTokenJson[] }>([
      "enroll",
      "list",
      "--home",
      gateway.home,
    ]);
    expect(list.enrollTokens.find((t) => t.tokenId === created.enrollToken.tokenId)).toMatchObject({
      usesLeft: 0,
      usesTotal: 2,
      source: "created",
    });
  });

  it("cannot mint administrators", async () => {
    const result = await runCli(["enroll", "create", "--role", "admin", "--home", gateway.home, "--json"]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({
      error: "invalid_request",
      error_description: expect.stringContaining("keys:write"),
    });
  });

  it("stops working when revoked", async () => {
    const created = await runJson<{ token: string; enrollToken: EnrollTokenJson }>([
      "enroll",
      "create",
      "--home",
      gateway.home,
    ]);
    await runJson(["enroll", "revoke", created.enrollToken.tokenId, "--home", gateway.home]);
    const result = await register("late", undefined, {
      ...process.env,
      GATEHOUSE_ENROLL_TOKEN: created.token,
    });
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({
      error: "invalid_token",
      error_description: expect.stringContaining("revoked"),
    });
  });
});

describe("migrate --from-legacy", () => {
  it("lets existing nodes in once with the old token, and only that one", async () => {
    const A = "7b3e9f1c5a0d48e2b6f4c8a1d3e5f7a9c0b2d4e6f8a1";
    const B = "2d8c6a4e0f9b17d35c7e1a9f3b5d7c9e1f3a5b7d9c0e";
    const root = path.dirname(tempHome("migrate"));
    const userHome = path.join(root, "user");
    mkdirSync(path.join(userHome, ".clawdbot"), { recursive: true });
    writeFileSync(
      path.join(userHome, ".clawdbot", "clawdbot.json"),
      JSON.stringify({ gateway: { auth: { token: A }, remote: { token: A } } }),
    );
    writeFileSync(path.join(userHome, ".zshrc"), `export CLAWDBOT_GATEWAY_TOKEN=${B}\n`);
    const env = { PATH: process.env.PATH, HOME: userHome };

    const migrated = await runCli(
      ["migrate", "--from-legacy", "--uses", "1", "--home", gateway.home, "--json"],
      {
        env,
        cwd: root,
      },
    );
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).not.toContain(A);
    const fp = (t: string) => "sha256:" + createHash("sha256").update(t).digest("hex").slice(0, 12);
    const report = JSON.parse(migrated.stdout) as {
      imported: string;
      notImported: string[];
      enrollToken: EnrollTokenJson;
      remove: { file: string }[];
    };
    expect(report).toMatchObject({
      imported: fp(A),
      notImported: [fp(B)],
      enrollToken: { source: "legacy", usesTotal: 1 },
    });
    expect(report.remove.map((r) => r.file)).toContain(path.join(userHome, ".zshrc"));

    const wrong = await register("old-laptop", B);
    expect(JSON.parse(wrong.stdout)).toMatchObject({ error: "invalid_token" });
    const right = await register("old-laptop", undefined, { ...process.env, GATEHOUSE_ENROLL_TOKEN: A });
    expect(right.code, right.stdout).toBe(0);
    expect(JSON.parse(right.stdout)).toMatchObject({ status: "approved" });
    // Once: the old token lets no second node in.
    const again = await register("another", A);
    expect(JSON.parse(again.stdout)).toMatchObject({ error: "invalid_token" });
  });
});
