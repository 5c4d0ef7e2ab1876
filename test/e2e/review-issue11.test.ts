import { afterAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cleanupAll, freePort, runCli, runJson, tempHome } from "./harness.js";

afterAll(() => cleanupAll());

async function initHome(): Promise<{ home: string; port: number }> {
  const home = tempHome("names");
  const port = await freePort();
  await runJson(["gateway", "init", "--home", home, "--listen", `127.0.0.1:${port}`]);
  return { home, port };
}

describe("names for the server certificate follow one rule, wherever they are given", () => {
  it("`gateway add-name` refuses names no node can dial, says why, and leaves gateway.json as it was", async () => {
    const { home } = await initHome();
    const file = path.join(home, "gateway.json");
    const before = readFileSync(file, "utf8");
    const refusals: [string, string][] = [
      ["300.1.1.1", "is it a mistyped IPv4 address?"],
      ["0.0.0.0", "is the wildcard address"],
      ["::", "is the wildcard address"],
      ["https://gw.example.com:8443/", "is a URL: give only the host name or address (gw.example.com)"],
      ["gw.example.com:443", "has a port: give the name alone (gw.example.com)"],
      ["[fd00::2]", "give it without them (fd00::2)"],
    ];
    for (const [name, why] of refusals) {
      const result = await runCli(["gateway", "add-name", name, "--home", home]);
      expect(result.code, name).toBe(2);
      expect(result.stderr, name).toContain(`name ${JSON.stringify(name)}`);
      expect(result.stderr, name).toContain(why);
    }
    expect(readFileSync(file, "utf8")).toBe(before);
  });

  it("`gateway init` with a name or listen host that is not one exits 2 and creates nothing", async () => {
    const port = await freePort();
    for (const flags of [
      ["--san", "300.1.1.1"],
      ["--listen", `300.1.1.1:${port}`],
    ]) {
      const home = tempHome("init-names");
      const result = await runCli(["gateway", "init", "--home", home, ...flags]);
      expect(result.code, flags.join(" ")).toBe(2);
      expect(result.stderr).toContain('"300.1.1.1" is neither an IP address nor a host name');
      expect(result.stderr).not.toContain("internal_error");
      expect(existsSync(home), flags.join(" ")).toBe(false);
    }
  });

  it("a name put in gateway.json by hand that cannot be in a certificate is config_invalid naming the key, not internal_error", async () => {
    const { home } = await initHome();
    const file = path.join(home, "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...config, sans: ["gw.lan", "300.1.1.1"] }, null, 2));
    const result = await runCli(["gateway", "start", "--home", home]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`config_invalid: sans.1 in ${file}`);
    expect(result.stderr).not.toContain("internal_error");
  });
});
