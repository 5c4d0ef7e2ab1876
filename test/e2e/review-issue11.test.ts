import { afterAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  cleanupAll,
  freePort,
  registeredNode,
  runCli,
  runJson,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";
import { startAgentAllowing, stopAgent } from "./agents.js";

const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  cleanupAll();
});

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

describe("node test-connection names the credential it was refused, as the admin commands do", () => {
  it("a stale GATEHOUSE_TOKEN or --token is named, with how to go back to the device certificate", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    const node = await registeredNode(gateway, "laptop");
    const stale = "eyJhbGciOiJFUzI1NiIsImtpZCI6InNrX3N0YWxlIiwidHlwIjoiYXQrand0In0.e30.c3RhbGU";
    const certificate = `this home's device certificate (${path.join(node.home, "device.pem")})`;

    const fromVariable = await runCli(["node", "test-connection", "--home", node.home, "--json"], {
      env: { ...process.env, GATEHOUSE_TOKEN: stale },
    });
    expect(fromVariable.code).toBe(1);
    const variableError = (
      JSON.parse(fromVariable.stdout) as {
        error: { code: string; layer: string; description: string; hint: string };
      }
    ).error;
    expect(variableError.layer).toBe("auth");
    expect(variableError.description).toContain(
      `the credential was the access token in the GATEHOUSE_TOKEN variable, which takes precedence over ${certificate}`,
    );
    expect(variableError.hint).toContain(`unset GATEHOUSE_TOKEN to use ${certificate}`);

    const env = { ...process.env };
    delete env.GATEHOUSE_TOKEN;
    const fromFlag = await runCli(["node", "test-connection", "--home", node.home, "--token", stale], {
      env,
    });
    expect(fromFlag.code).toBe(1);
    expect(fromFlag.stdout + fromFlag.stderr).toContain(
      "the credential was the access token given with the --token flag",
    );
    expect(fromFlag.stdout + fromFlag.stderr).toContain(`drop --token to use ${certificate}`);

    const withCertificate = await runCli(["node", "test-connection", "--home", node.home], { env });
    expect(withCertificate.code).toBe(0);
  });
});

describe("nodes exec says when the command was ended by a signal", () => {
  it("prints the signal instead of exiting 1 with no word", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    const node = await registeredNode(gateway, "worker");
    const agent = await startAgentAllowing(node.home, ["sh"]);

    const result = await runCli([
      "nodes",
      "exec",
      "worker",
      "--home",
      gateway.home,
      "--",
      "sh",
      "-c",
      "kill -TERM $$",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("the command was ended by SIGTERM on the node");

    await stopAgent(agent);
  });
});

describe("gateway start on a listen host that does not resolve", () => {
  it("is config_invalid naming listen, not internal_error, and a first start leaves no home", async () => {
    const { home, port } = await initHome();
    const existing = await runCli(["gateway", "start", "--home", home, "--listen", `nosuch.invalid:${port}`]);
    expect(existing.code).toBe(1);
    expect(existing.stderr).toContain(
      `config_invalid: listen nosuch.invalid:${port}: nosuch.invalid does not resolve`,
    );

    const fresh = tempHome("unresolved");
    const first = await runCli(["gateway", "start", "--home", fresh, "--listen", `nosuch.invalid:${port}`]);
    expect(first.code).toBe(1);
    expect(first.stderr).toContain("config_invalid: listen");
    expect(existsSync(fresh)).toBe(false);
  });
});

// A gateway stopped while a node runs a command tells the operator the gateway stopped, not to
// start the node: restart.test.ts checks it, with the stop's close code (1012 gateway restarting).

describe("nodes exec --timeout outside the gateway's bounds", () => {
  it("is the CLI's own usage error (125) naming the bounds, with no timer overflow warning", async () => {
    const { home } = await initHome();
    for (const timeout of ["99999999999", "50"]) {
      const result = await runCli([
        "nodes",
        "exec",
        "laptop",
        "--home",
        home,
        "--timeout",
        timeout,
        "--",
        "true",
      ]);
      expect(result.code, timeout).toBe(125);
      expect(result.stderr, timeout).toContain(`--timeout ${timeout}: give milliseconds from 100 to 300000`);
      expect(result.stderr, timeout).not.toContain("TimeoutOverflowWarning");
    }
  });
});

describe("--ca-file during a CA rotation", () => {
  it("a file with only the new CA names itself and points to the bundle, which works", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    await runJson(["rotate", "ca", "--home", gateway.home]);
    const onlyNew = path.join(gateway.home, "pki", "ca.pem");
    const refused = await runCli(["devices", "list", "--home", gateway.home, "--ca-file", onlyNew]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`ca_mismatch`);
    expect(refused.stderr).toContain(`the CA came from --ca-file ${onlyNew} (1 certificate)`);
    expect(refused.stderr).toContain("admin/ca.pem in the gateway's home");

    const bundle = path.join(gateway.home, "admin", "ca.pem");
    const listed = await runCli(["devices", "list", "--home", gateway.home, "--ca-file", bundle]);
    expect(listed.code).toBe(0);
  });
});

describe("one gateway per home", () => {
  it("a second gateway start on the same home but another port is refused naming the first one, and changes nothing", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    const pid = gateway.process.child.pid;
    const otherPort = await freePort();
    const second = await runCli([
      "gateway",
      "start",
      "--home",
      gateway.home,
      "--listen",
      `127.0.0.1:${otherPort}`,
    ]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`already_running: this home's gateway already runs (pid ${pid}`);
    expect(second.stderr).toContain(`kill ${pid}`);
    // The first one's record of itself is intact: a later add-name still names it.
    expect(readFileSync(path.join(gateway.home, "gateway.pid"), "utf8").trim()).toBe(String(pid));

    // A gateway that was killed leaves a lock that the next start takes over.
    await gateway.stop(true);
    await gateway.restart();
    expect(gateway.process.child.pid).not.toBe(pid);
  });
});
