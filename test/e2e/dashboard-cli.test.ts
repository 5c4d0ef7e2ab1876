import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  cleanupAll,
  registeredNode,
  runCli,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";

afterAll(cleanupAll);

interface LinkJson {
  url: string;
  role: string;
  expiresAt: string;
}

interface ErrorJson {
  error: string;
  error_description: string;
  hint: string;
}

describe("gatehouse dashboard", () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway();
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it("--json prints a login link on the home's gateway, its role (admin by default) and when it expires", async () => {
    const before = Date.now();
    const result = await runCli(["dashboard", "--home", gateway.home, "--json"]);
    expect(result.code, result.stderr).toBe(0);
    const link = JSON.parse(result.stdout) as LinkJson;
    expect(Object.keys(link).sort()).toEqual(["expiresAt", "role", "url"]);
    expect(link.url).toMatch(new RegExp(`^${gateway.url}/dashboard/login\\?token=[A-Za-z0-9_-]{43}$`));
    expect(link.role).toBe("admin");
    // A few minutes ahead (the contract says 5); the margin is for a loaded machine, not a measure.
    const expires = new Date(link.expiresAt).getTime();
    expect(expires).toBeGreaterThan(before);
    expect(expires).toBeLessThanOrEqual(Date.now() + 10 * 60_000);
  });

  it("--role viewer asks for a read-only session's link", async () => {
    const result = await runCli(["dashboard", "--role", "viewer", "--home", gateway.home, "--json"]);
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as LinkJson).role).toBe("viewer");
  });

  it("prints the link, the role and how to trust admin/ca.pem; opens no browser when stdout is not a terminal", async () => {
    // A desktop is there (DISPLAY, an xdg-open on PATH that leaves a mark): still nothing is opened,
    // because the output goes to a pipe, not a person's terminal.
    const bin = path.join(path.dirname(tempHome("opener")), "bin");
    const marker = path.join(bin, "opened");
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, "xdg-open"), `#!/bin/sh\nprintf '%s' "$1" > '${marker}'\n`);
    chmodSync(path.join(bin, "xdg-open"), 0o755);
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}`, DISPLAY: ":0" };
    const result = await runCli(["dashboard", "--home", gateway.home], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("Open this link to log in (single use, expires in 5 minutes):");
    expect(result.stdout).toMatch(
      new RegExp(`\\n  ${gateway.url}/dashboard/login\\?token=[A-Za-z0-9_-]{43}\\n`),
    );
    expect(result.stdout).toContain("role: admin");
    expect(result.stdout).toContain(path.join(gateway.home, "admin", "ca.pem"));
    expect(result.stdout).not.toContain("Opened it in your browser");
    expect(existsSync(marker)).toBe(false);
  });

  it("refuses an unknown role with the gateway's invalid_request, naming the role, and exits 1", async () => {
    const result = await runCli(["dashboard", "--role", "wizard", "--home", gateway.home]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("invalid_request");
    expect(result.stderr).toContain("wizard");

    const json = await runCli(["dashboard", "--role", "wizard", "--home", gateway.home, "--json"]);
    expect(json.code).toBe(1);
    const body = JSON.parse(json.stdout) as ErrorJson;
    expect(body.error).toBe("invalid_request");
    expect(body.error_description).toContain("wizard");
  });

  it("says where it looked when the home holds no credential at all, and exits 1", async () => {
    const empty = tempHome("empty");
    const result = await runCli(["dashboard", "--home", empty]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("config_missing");
    expect(result.stderr).toContain(empty);
    expect(result.stderr).toMatch(/hint: .*--home/);
  });

  it("refuses a node's own certificate (no admin scopes) with insufficient_scope, and exits 1", async () => {
    const { home } = await registeredNode(gateway, "dashboard-node");
    const result = await runCli(["dashboard", "--home", home, "--json"]);
    expect(result.code).toBe(1);
    expect((JSON.parse(result.stdout) as ErrorJson).error).toBe("insufficient_scope");
  });
});
