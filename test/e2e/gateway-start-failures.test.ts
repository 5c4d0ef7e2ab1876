import { describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { runCli, tempHome } from "./harness.js";
import { gatewayForFile } from "./file-gateway.js";

const gateway = gatewayForFile();

/** `devices list` against the gateway with `file` as --ca-file (and a token, so nothing else is missing). */
function devicesListWithCaFile(file: string) {
  return runCli(["devices", "list", "--gateway", gateway.url, "--ca-file", file, "--token", "x"]);
}

describe("a gateway start on a busy port", () => {
  it("is address_in_use naming the address, and leaves no new home behind", async () => {
    const home = tempHome("second");
    const listen = `127.0.0.1:${gateway.port}`;
    const result = await runCli(["gateway", "start", "--home", home, "--listen", listen]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`✗ address_in_use: ${listen} is already in use`);
    expect(result.stderr).not.toContain("internal_error");
    expect(result.stderr).not.toContain("EADDRINUSE");
    expect(result.stderr).not.toContain("Gateway home created");
    expect(existsSync(home)).toBe(false);
  });

  it("empties nothing it did not fill: an existing empty folder given as --home stays empty", async () => {
    const home = tempHome("empty");
    mkdirSync(home, { recursive: true });
    const result = await runCli([
      "gateway",
      "start",
      "--home",
      home,
      "--listen",
      `127.0.0.1:${gateway.port}`,
      "--json",
    ]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ error: "address_in_use" });
    expect(readdirSync(home)).toEqual([]);
  });

  it("says when this home's own gateway already holds the address, with its process id", async () => {
    const result = await runCli(["gateway", "start", "--home", gateway.home]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("address_in_use");
    expect(result.stderr).toContain("this home's gateway");
    expect(result.stderr).toContain(`pid ${gateway.process.child.pid}`);
    // The running gateway is untouched.
    const health = await runCli(["devices", "list", "--home", gateway.home, "--json"]);
    expect(health.code).toBe(0);
  });
});

describe("files given by flag", () => {
  it("a missing --api-key-file is invalid_request naming the file", async () => {
    const missing = path.join(path.dirname(gateway.home), "no-such-key");
    const result = await runCli(["token", "--home", gateway.home, "--api-key-file", missing]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("✗ invalid_request:");
    expect(result.stderr).toContain(`--api-key-file ${missing}`);
    expect(result.stderr).not.toContain("internal_error");
  });

  it("a missing --refresh-token-file is invalid_request naming the file", async () => {
    const missing = path.join(path.dirname(gateway.home), "no-such-token");
    const result = await runCli(["token", "--home", gateway.home, "--refresh-token-file", missing, "--json"]);
    expect(result.code).toBe(1);
    const body = JSON.parse(result.stdout) as { error: string; error_description: string };
    expect(body.error).toBe("invalid_request");
    expect(body.error_description).toContain(missing);
  });

  it("a missing --ca-file is invalid_request naming the file", async () => {
    const missing = path.join(path.dirname(gateway.home), "no-such-ca.pem");
    const result = await devicesListWithCaFile(missing);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("✗ invalid_request:");
    expect(result.stderr).toContain(`--ca-file ${missing}`);
    expect(result.stderr).not.toContain("internal_error");
  });

  it("a folder given as --ca-file is invalid_request naming it", async () => {
    const folder = path.dirname(gateway.home);
    const result = await devicesListWithCaFile(folder);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`✗ invalid_request: --ca-file ${folder}`);
  });
});
