import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  CLI,
  cleanupAll,
  freePort,
  probeHealth,
  runCli,
  runJson,
  spawnCli,
  tempHome,
  type Running,
} from "./harness.js";

afterAll(cleanupAll);

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "fixtures");

interface Setting {
  key: string;
  value: unknown;
  source: string;
  file?: string;
  shadowed?: { source: string; value: unknown; file?: string };
  secret?: boolean;
}
interface Finding {
  severity: string;
  check: string;
  message: string;
  file?: string;
}

async function gatewayHome(listen = "127.0.0.1:18999"): Promise<string> {
  const home = tempHome("cfg-gw");
  await runJson(["gateway", "init", "--home", home, "--listen", listen]);
  return home;
}

type Json = Record<string, unknown>;

function editJson(file: string, edit: (json: Json) => void): void {
  const json = JSON.parse(readFileSync(file, "utf8")) as Json;
  edit(json);
  writeFileSync(file, JSON.stringify(json, null, 2));
}

async function explain(home: string, extra: string[] = []): Promise<Setting[]> {
  const out = await runJson<{ configs: { settings: Setting[] }[] }>([
    "config",
    "explain",
    "--home",
    home,
    ...extra,
  ]);
  return out.configs[0]!.settings;
}

const byKey = (settings: Setting[], key: string) => settings.find((s) => s.key === key);

describe("config explain", () => {
  it("names the source of every setting, shows what a flag shadowed, and never shows a secret", async () => {
    const home = await gatewayHome("127.0.0.1:18999");
    const secretFile = path.join(path.dirname(home), "hash.key");
    const secret = "5f0c1e9a7b3d48e2a6c4f1b8d0e2a4c6b8d0f2a4c6e8";
    writeFileSync(secretFile, secret + "\n", { mode: 0o600 });
    editJson(path.join(home, "gateway.json"), (c) => {
      c.certificates = { clientTtl: "12h" };
      c.tokens = { hashKey: `file://${secretFile}` };
    });
    const file = path.join(home, "gateway.json");

    const settings = await explain(home, ["--listen", "127.0.0.1:19999"]);
    expect(byKey(settings, "listen")).toEqual({
      key: "listen",
      value: "127.0.0.1:19999",
      source: "flag",
      shadowed: { source: "file", value: "127.0.0.1:18999", file },
    });
    expect(byKey(settings, "certificates.clientTtl")).toEqual({
      key: "certificates.clientTtl",
      value: "12h",
      source: "file",
      file,
    });
    expect(byKey(settings, "tokens.accessTtl")).toMatchObject({ value: "1h", source: "default" });
    expect(byKey(settings, "tls.handshakeTimeout")).toMatchObject({ value: "10s", source: "default" });
    expect(byKey(settings, "tokens.hashKey")).toMatchObject({ value: `file://${secretFile}`, secret: true });

    // A plaintext secret is shown by a fingerprint prefix only, in the table and in JSON.
    editJson(file, (c) => (c.tokens = { hashKey: secret }));
    const plain = await runCli(["config", "explain", "--home", home]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).not.toContain(secret);
    const prefix = createHash("sha256").update(secret).digest("hex").slice(0, 12);
    expect(plain.stdout).toContain(`sha256:${prefix}… (plaintext)`);
    expect(plain.stdout).toMatch(/listen\s+127\.0\.0\.1:18999\s+file /);
    const json = await runCli(["config", "explain", "--home", home, "--json"]);
    expect(json.stdout).not.toContain(secret);
  });

  it("explains a node home, with a flag over the file", async () => {
    const home = tempHome("cfg-node");
    mkdirSync(home, { recursive: true, mode: 0o700 });
    const pin = "sha256:" + "ab".repeat(32);
    writeFileSync(
      path.join(home, "node.json"),
      JSON.stringify({ gatewayUrl: "https://gw.example:18789", caFingerprint: pin }),
    );
    const settings = await explain(home, ["--gateway", "https://127.0.0.1:1"]);
    expect(byKey(settings, "gatewayUrl")).toMatchObject({
      source: "flag",
      value: "https://127.0.0.1:1",
      shadowed: { source: "file", value: "https://gw.example:18789" },
    });
    expect(byKey(settings, "caFingerprint")).toMatchObject({ source: "file", value: pin });
    expect(byKey(settings, "heartbeatInterval")).toMatchObject({ source: "default", value: "15s" });
    expect(byKey(settings, "exec.allow")).toMatchObject({ source: "default", value: [] });
  });

  it("refuses an unknown key, naming it, the file and the key that was meant", async () => {
    const home = await gatewayHome();
    const file = path.join(home, "gateway.json");
    editJson(file, (c) => (c.listne = "0.0.0.0:1"));
    const result = await runCli(["config", "explain", "--home", home, "--json"]);
    expect(result.code).toBe(1);
    const body = JSON.parse(result.stdout) as { error: string; error_description: string };
    expect(body.error).toBe("config_invalid");
    expect(body.error_description).toContain(`"listne" (did you mean "listen"?)`);
    expect(body.error_description).toContain(file);
    editJson(file, (c) => {
      delete c.listne;
      c.tokens = { acessTtl: "2h" };
    });
    const nested = JSON.parse((await runCli(["config", "explain", "--home", home, "--json"])).stdout) as {
      error_description: string;
    };
    expect(nested.error_description).toContain(`"acessTtl" (did you mean "accessTtl"?) in tokens`);
  });
});

describe("secret references at gateway start", () => {
  it("resolves tokens.hashKey through the op CLI, and a bad reference stops the start by name", async () => {
    const port = await freePort();
    const home = await gatewayHome(`127.0.0.1:${port}`);
    const items = path.join(path.dirname(home), "items.json");
    const first = "0f9e8d7c6b5a49382716f5e4d3c2b1a0ffeeddccbbaa";
    writeFileSync(items, JSON.stringify({ "op://Infra/gatehouse/hash-key": first }));
    editJson(
      path.join(home, "gateway.json"),
      (c) => (c.tokens = { hashKey: "op://Infra/gatehouse/hash-key" }),
    );
    // The stand-in `op` is found on the PATH, as the real one would be.
    const env = { ...process.env, PATH: `${FIXTURES}:${process.env.PATH}`, FAKE_OP_ITEMS: items };

    const start = async (): Promise<Running> => {
      const gateway = spawnCli(["gateway", "start", "--home", home], env);
      const deadline = Date.now() + 20_000;
      while (!(await probeHealth(`https://127.0.0.1:${port}`))) {
        if (Date.now() > deadline || gateway.child.exitCode !== null)
          throw new Error(`gateway did not start\n${gateway.stdout}\n${gateway.stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return gateway;
    };
    const stop = async (gateway: Running) => {
      gateway.child.kill("SIGTERM");
      await gateway.exited;
    };

    let gateway = await start();
    const created = await runJson<{ apiKey: string }>([
      "keys",
      "create",
      "--name",
      "s",
      "--role",
      "viewer",
      "--home",
      home,
    ]);
    const keyFile = path.join(path.dirname(home), "s.key");
    writeFileSync(keyFile, created.apiKey, { mode: 0o600 });
    expect((await runCli(["token", "--api-key-file", keyFile, "--home", home])).code).toBe(0);
    await stop(gateway);
    expect(gateway.stdout + gateway.stderr).not.toContain(first);

    // Another key behind the same reference: the stored hash no longer matches, so the key is refused.
    writeFileSync(
      items,
      JSON.stringify({ "op://Infra/gatehouse/hash-key": "11112222333344445555666677778888aaaabbbb" }),
    );
    gateway = await start();
    const refused = await runCli(["token", "--api-key-file", keyFile, "--home", home, "--json"]);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout)).toMatchObject({ error: "invalid_token" });
    await stop(gateway);

    editJson(path.join(home, "gateway.json"), (c) => (c.tokens = { hashKey: "op://Infra/nothing/hash-key" }));
    const failed = await runCli(["gateway", "start", "--home", home], { env });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("config_invalid: tokens.hashKey: secret op://Infra/nothing/hash-key");
    expect(failed.stderr).toContain(`"nothing" isn't an item`);
  });
});

describe("doctor", () => {
  it("passes a fresh gateway home, then names bad modes, plaintext and weak secrets, and broken references", async () => {
    const home = await gatewayHome();
    const clean = await runCli(["doctor", "--home", home, "--json"]);
    expect(clean.code, clean.stdout).toBe(0);

    chmodSync(path.join(home, "pki", "ca.key"), 0o644);
    chmodSync(home, 0o755);
    editJson(path.join(home, "gateway.json"), (c) => {
      c.tokens = { hashKey: "a".repeat(40) };
      c.vault = { token: "env://GH_DOCTOR_NO_SUCH_VAR" };
    });
    const result = await runCli(["doctor", "--home", home, "--json"]);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as { worst: string; sections: { findings: Finding[] }[] };
    const findings = report.sections[0]!.findings;
    expect(report.worst).toBe("error");
    expect(findings).toContainEqual(
      expect.objectContaining({
        severity: "error",
        check: "file-mode",
        file: path.join(home, "pki", "ca.key"),
      }),
    );
    expect(findings).toContainEqual(expect.objectContaining({ severity: "warning", check: "home-mode" }));
    expect(findings).toContainEqual(
      expect.objectContaining({
        severity: "warning",
        check: "plaintext-secret",
        message: expect.stringContaining("tokens.hashKey"),
      }),
    );
    expect(findings).toContainEqual(
      expect.objectContaining({
        severity: "error",
        check: "weak-secret",
        message: expect.stringContaining("low entropy"),
      }),
    );
    expect(findings).toContainEqual(
      expect.objectContaining({
        severity: "error",
        check: "secret-reference",
        message: expect.stringContaining("env://GH_DOCTOR_NO_SUCH_VAR"),
      }),
    );
    expect(result.stdout).not.toContain("a".repeat(40));
  });

  it("names a node home whose ca.pem does not hold the pinned CA", async () => {
    const gateway = await gatewayHome();
    const home = tempHome("doc-node");
    mkdirSync(home, { recursive: true, mode: 0o700 });
    writeFileSync(path.join(home, "ca.pem"), readFileSync(path.join(gateway, "pki", "ca.pem")));
    writeFileSync(
      path.join(home, "node.json"),
      JSON.stringify({ gatewayUrl: "https://127.0.0.1:18999", caFingerprint: "sha256:" + "0".repeat(64) }),
      { mode: 0o600 },
    );
    const result = await runCli(["doctor", "--home", home]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/✗ ca-pin\s+ca\.pem does not hold the CA that node\.json pins/);
    expect(result.stdout).toMatch(/! certificate\s+no device certificate/);
  });
});

describe("doctor --legacy", () => {
  // Three different real tokens and one placeholder, spread over the seven places of the old setup.
  const A = "c7a1e95f03b24d68a9f2e71c5b08d34f6a2e9c17b5d3";
  const B = "9d4f2b7e1a6c38f05e2d9b4a7c1f6e3d8b0a5c2e7f19";
  const C = "4e8b1d6a9f3c27e05b8d1a4f7c2e9b6d3a0f5e8c1b74";
  const PLACEHOLDER = "clawdbot-local-dev";

  function sprawl(): { userHome: string; work: string } {
    const root = path.dirname(tempHome("legacy"));
    const userHome = path.join(root, "user");
    const work = path.join(root, "work");
    const write = (file: string, text: string) => {
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, text);
    };
    write(
      path.join(userHome, ".clawdbot", "clawdbot.json"),
      JSON.stringify({
        gateway: { port: 18789, auth: { token: A }, remote: { url: "wss://gw:18789", token: A } },
      }),
    );
    write(
      path.join(userHome, ".clawdbot", "devices", "paired.json"),
      JSON.stringify({ devices: [{ id: "mbp", token: A }] }),
    );
    write(
      path.join(userHome, ".openclaw", "openclaw.json"),
      JSON.stringify({ gateway: { auth: { token: C } } }),
    );
    write(path.join(userHome, ".zshrc"), `alias ll='ls -l'\nexport CLAWDBOT_GATEWAY_TOKEN="${C}"\n`);
    write(
      path.join(userHome, "Library", "LaunchAgents", "com.clawdbot.node.plist"),
      `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
  <key>Label</key><string>com.clawdbot.node</string>
  <key>ProgramArguments</key><array><string>/usr/local/bin/clawdbot</string><string>node</string><string>--token</string><string>${PLACEHOLDER}</string></array>
  <key>EnvironmentVariables</key><dict><key>CLAWDBOT_GATEWAY_TOKEN</key><string>${A}</string></dict>
</dict></plist>
`,
    );
    write(path.join(work, ".env"), `# local\nCLAWDBOT_GATEWAY_TOKEN=${B}\n`);
    write(
      path.join(work, "deploy", "docker-compose.yml"),
      `services:\n  gateway:\n    image: clawdbot/gateway\n    environment:\n      CLAWDBOT_GATEWAY_TOKEN: "${B}"\n    command: ["clawdbot", "gateway", "--token", "${B}"]\n`,
    );
    return { userHome, work };
  }

  it("finds every copy in the seven places, groups them, marks the drift and the placeholder, and never prints a token", async () => {
    const { userHome, work } = sprawl();
    const env = { PATH: process.env.PATH, HOME: userHome, CLAWDBOT_GATEWAY_TOKEN: A };
    const result = await runCli(["doctor", "--legacy", "--json"], { env, cwd: work });
    expect(result.code).toBe(1);
    for (const token of [A, B, C]) expect(result.stdout).not.toContain(token);
    const report = JSON.parse(result.stdout) as {
      tokens: { kind: string; file: string; where: string; fingerprint: string; placeholder?: string }[];
      groups: { fingerprint: string; placeholder?: string; locations: { kind: string }[] }[];
      disagree: boolean;
      migration: string[];
    };
    const fp = (t: string) => "sha256:" + createHash("sha256").update(t).digest("hex").slice(0, 12);
    expect(report.disagree).toBe(true);
    expect(report.groups.map((g) => g.fingerprint)).toEqual([fp(A), fp(B), fp(C), fp(PLACEHOLDER)]);
    const kinds = (t: string) =>
      report.groups
        .find((g) => g.fingerprint === fp(t))!
        .locations.map((l) => l.kind)
        .sort();
    expect(kinds(A)).toEqual(["environment", "json-config", "json-config", "launch-agent", "pairing"]);
    expect(kinds(B)).toEqual(["compose", "dotenv", "flag"]);
    expect(kinds(C)).toEqual(["json-config", "shell-export"]);
    expect(report.groups.find((g) => g.fingerprint === fp(PLACEHOLDER))).toMatchObject({
      placeholder: "a known placeholder",
      locations: [{ kind: "flag" }],
    });
    // All seven kinds of place were read.
    expect(new Set(report.tokens.map((t) => t.kind))).toEqual(
      new Set([
        "json-config",
        "pairing",
        "environment",
        "shell-export",
        "launch-agent",
        "flag",
        "dotenv",
        "compose",
      ]),
    );
    expect(report.tokens.find((t) => t.kind === "shell-export")).toMatchObject({
      file: path.join(userHome, ".zshrc"),
      where: "line 2: CLAWDBOT_GATEWAY_TOKEN",
    });
    expect(report.migration.at(-1)).toContain(path.join(work, ".env"));

    const text = await runCli(["doctor", "--legacy"], { env, cwd: work });
    expect(text.stdout).toContain("THEY DISAGREE");
    expect(text.stdout).toContain(`${fp(PLACEHOLDER)}  placeholder (a known placeholder)`);
    for (const token of [A, B, C]) expect(text.stdout).not.toContain(token);
  });

  it("says so when there is nothing left", async () => {
    const root = path.dirname(tempHome("legacy-clean"));
    mkdirSync(root, { recursive: true });
    const result = await runCli(["doctor", "--legacy"], {
      env: { PATH: process.env.PATH, HOME: root },
      cwd: root,
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("no legacy gateway token found");
  });
});

describe("service install", () => {
  it("writes service files that run start --home HOME and hold no credential", async () => {
    const home = await gatewayHome();
    const userHome = path.dirname(tempHome("svc"));
    const env = { ...process.env, HOME: userHome, GATEHOUSE_TOKEN: "must-not-leak-into-the-unit" };

    const unit = await runCli(
      ["service", "install", "gateway", "--home", home, "--platform", "linux", "--dry-run"],
      { env },
    );
    expect(unit.code).toBe(0);
    const execStart = /^ExecStart=(.+)$/m.exec(unit.stdout)?.[1];
    expect(execStart).toBe(`${process.execPath} ${CLI} gateway start --home ${home}`);
    expect(unit.stdout).not.toMatch(/^Environment/m);
    expect(unit.stdout).not.toContain("must-not-leak");
    expect(unit.stdout).not.toMatch(/--token|ghk_|BEGIN .*PRIVATE KEY/);

    const install = await runCli(
      ["service", "install", "gateway", "--home", home, "--platform", "linux", "--json"],
      {
        env,
      },
    );
    expect(install.code).toBe(0);
    expect(JSON.parse(install.stdout)).toMatchObject({ written: true });
    const unitFile = path.join(userHome, ".config", "systemd", "user", "gatehouse-gateway.service");
    expect(existsSync(unitFile)).toBe(true);
    expect(readFileSync(unitFile, "utf8")).toBe(unit.stdout);
    if (existsSync("/usr/bin/systemd-analyze"))
      execFileSync("systemd-analyze", ["verify", unitFile], { stdio: "pipe" });

    const plist = await runCli(
      ["service", "install", "gateway", "--home", home, "--platform", "darwin", "--dry-run"],
      { env },
    );
    const plistFile = path.join(userHome, "gatehouse.plist");
    writeFileSync(plistFile, plist.stdout);
    // Parsed by a real plist parser (Python's plistlib), as launchd would read it.
    const parsed = JSON.parse(
      execFileSync(
        "python3",
        [
          "-c",
          "import json,plistlib,sys;print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))",
          plistFile,
        ],
        {
          encoding: "utf8",
        },
      ),
    ) as Record<string, unknown>;
    expect(parsed.Label).toBe("dev.gatehouse.gateway");
    expect(parsed.ProgramArguments).toEqual([process.execPath, CLI, "gateway", "start", "--home", home]);
    expect(parsed).not.toHaveProperty("EnvironmentVariables");
    expect(plist.stdout).not.toContain("must-not-leak");
  });

  it("refuses to install a node service for a home with no registered node", async () => {
    const home = tempHome("svc-node");
    const result = await runCli(["service", "install", "node", "--home", home, "--dry-run", "--json"]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ error: "config_missing" });
  });
});
