import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  cleanupAll,
  freePort,
  probeHealth,
  registeredNode,
  runCli,
  spawnCli,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";
import { apiKeyToken, type ApiKeyToken } from "./api-keys.js";

/**
 * Admin commands on a gateway home follow its gateway.json (no second copy of the address to go
 * stale), and every refusal of a credential names where the credential came from and how to stop
 * using it.
 */

interface ErrorBody {
  error: string;
  error_description: string;
  hint: string;
}

let gateway: TestGateway;

/** Moves the gateway to another listen address by editing gateway.json, as an operator would. */
async function moveGateway(listen: string, dialled: string): Promise<void> {
  await gateway.stop();
  const file = path.join(gateway.home, "gateway.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  config.listen = listen;
  writeFileSync(file, JSON.stringify(config, null, 2));
  gateway.process = spawnCli(["gateway", "start", "--home", gateway.home]);
  const deadline = Date.now() + 30_000;
  while (!(await probeHealth(dialled))) {
    if (Date.now() > deadline)
      throw new Error(`gateway did not start\n${gateway.process.stdout}\n${gateway.process.stderr}`);
    await sleep(100);
  }
}

/** A key of this role and an access token for it, as a script gets them. */
function apiKey(role: string): Promise<ApiKeyToken> {
  return apiKeyToken(gateway, role, `${role}-${Date.now()}`);
}

function withEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const [name, value] of Object.entries(extra)) if (value === undefined) delete env[name];
  return env;
}

beforeAll(async () => {
  gateway = await startTestGateway();
}, 60_000);

afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

describe("a credential refused names where it came from and how to stop using it", () => {
  it("a stale GATEHOUSE_TOKEN: names the variable, and unsetting it falls back to the home's certificate", async () => {
    const stale = await apiKey("admin");
    expect((await runCli(["keys", "revoke", stale.keyId, "--home", gateway.home])).code).toBe(0);
    const env = withEnv({ GATEHOUSE_TOKEN: stale.token });

    const text = await runCli(["devices", "list", "--home", gateway.home], { env });
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/✗ (invalid_token|token_expired|unknown_key):/);
    expect(text.stderr).toContain("GATEHOUSE_TOKEN");
    expect(text.stderr).toContain(
      `unset GATEHOUSE_TOKEN to use this home's admin certificate (${path.join(gateway.home, "admin", "admin.pem")})`,
    );

    const json = await runCli(["devices", "list", "--home", gateway.home, "--json"], { env });
    const body = JSON.parse(json.stdout) as ErrorBody;
    expect(body.error_description).toContain("the GATEHOUSE_TOKEN variable");
    expect(body.hint).toContain("unset GATEHOUSE_TOKEN");

    // The same home without the variable: the admin certificate works.
    const unset = await runCli(["devices", "list", "--home", gateway.home], {
      env: withEnv({ GATEHOUSE_TOKEN: undefined }),
    });
    expect(unset.code, unset.stderr).toBe(0);
  });

  it("a malformed token in the variable, on a home with no certificate, says there is nothing to fall back to", async () => {
    const copy = tempHome("no-cert");
    mkdirSync(copy, { recursive: true, mode: 0o700 });
    const result = await runCli(
      [
        "devices",
        "list",
        "--home",
        copy,
        "--gateway",
        gateway.url,
        "--ca-file",
        path.join(gateway.home, "pki", "ca.pem"),
        "--json",
      ],
      { env: withEnv({ GATEHOUSE_TOKEN: "not-a-token" }) },
    );
    const body = JSON.parse(result.stdout) as ErrorBody;
    expect(body).toMatchObject({ error: "invalid_token" });
    expect(body.error_description).toContain("the GATEHOUSE_TOKEN variable");
    expect(body.hint).toContain("unset GATEHOUSE_TOKEN");
    expect(body.hint).toContain("put a fresh token in it");
  });

  it("the --token flag wins over the variable, and a refusal names the flag", async () => {
    const viewer = await apiKey("viewer");
    const result = await runCli(["keys", "list", "--home", gateway.home, "--token", viewer.token, "--json"], {
      env: withEnv({ GATEHOUSE_TOKEN: "not-a-token" }),
    });
    const body = JSON.parse(result.stdout) as ErrorBody;
    // The viewer's token was used (its scope is too small), not the variable's garbage.
    expect(body.error).toBe("insufficient_scope");
    expect(body.error_description).toContain("the --token flag");
    expect(body.hint).toContain("drop --token");
  });

  it("an API key refused at exchange names its file", async () => {
    const revoked = await apiKey("viewer");
    expect((await runCli(["keys", "revoke", revoked.keyId, "--home", gateway.home])).code).toBe(0);
    const result = await runCli(["token", "--api-key-file", revoked.file, "--home", gateway.home, "--json"]);
    expect(result.code).toBe(1);
    const body = JSON.parse(result.stdout) as ErrorBody;
    expect(body.error_description).toContain(`the API key in ${revoked.file} (--api-key-file)`);
    expect(body.hint).toContain("gatehouse keys list");
  });

  it("a node's own certificate refused for an admin command names its file", async () => {
    const node = await registeredNode(gateway, "not-an-admin");
    const result = await runCli(["devices", "list", "--home", node.home, "--json"]);
    const body = JSON.parse(result.stdout) as ErrorBody;
    expect(body.error).toBe("insufficient_scope");
    expect(body.error_description).toContain(
      `the device certificate in ${path.join(node.home, "device.pem")}`,
    );
  });
});

describe("admin commands follow gateway.json's listen", () => {
  it("after listen is edited, admin commands on the home reach the gateway; a copied admin/ names its stale URL; doctor names the mismatch", async () => {
    const oldUrl = gateway.url;
    // A copy of the admin credential, as on an operator's laptop, made before the move.
    const laptop = tempHome("admin-copy");
    mkdirSync(laptop, { recursive: true, mode: 0o700 });
    cpSync(path.join(gateway.home, "admin"), path.join(laptop, "admin"), { recursive: true });

    const port = await freePort();
    await moveGateway(`0.0.0.0:${port}`, `https://127.0.0.1:${port}`);

    const list = await runCli(["devices", "list", "--home", gateway.home]);
    expect(list.code, list.stderr).toBe(0);

    // The copy still holds the old URL: the refusal says where that URL comes from.
    const stale = await runCli(["devices", "list", "--home", laptop, "--json"]);
    expect(stale.code).toBe(1);
    const body = JSON.parse(stale.stdout) as ErrorBody;
    expect(body.error).toBe("connection_refused");
    expect(body.error_description).toContain(oldUrl);
    expect(body.error_description).toContain(path.join(laptop, "admin", "gateway.json"));
    expect(body.hint).toContain("gatewayUrl");

    // doctor on the copy asks the gateway at the stored URL and names the stale URL and its fix.
    const onCopy = await runCli(["doctor", "--home", laptop, "--json"]);
    expect(onCopy.code).toBe(1);
    const copyReport = JSON.parse(onCopy.stdout) as {
      sections: {
        kind: string;
        findings: { check: string; severity: string; message: string; fix?: string }[];
      }[];
    };
    expect(copyReport.sections.map((s) => s.kind)).toEqual(["admin"]);
    const stored = copyReport.sections[0]!.findings.find((f) => f.check === "admin-url");
    expect(stored).toMatchObject({ severity: "warning" });
    expect(stored!.message).toContain("connection_refused");
    expect(stored!.message).toContain(oldUrl);
    expect(stored!.fix).toContain(`"gatewayUrl" in ${path.join(laptop, "admin", "gateway.json")}`);

    const doctor = await runCli(["doctor", "--home", gateway.home, "--json"]);
    const report = JSON.parse(doctor.stdout) as {
      sections: { findings: { check: string; severity: string; message: string; fix?: string }[] }[];
    };
    const finding = report.sections.flatMap((s) => s.findings).find((f) => f.check === "admin-url");
    expect(finding).toMatchObject({ severity: "warning" });
    expect(finding!.message).toContain(oldUrl);
    expect(finding!.message).toContain(`https://127.0.0.1:${port}`);
    expect(finding!.fix).toContain(`https://127.0.0.1:${port}`);
  });

  it("an IPv6 wildcard listen is dialled on ::1, with brackets", async () => {
    const port = await freePort();
    await moveGateway(`[::]:${port}`, `https://[::1]:${port}`);
    const list = await runCli(["devices", "list", "--home", gateway.home]);
    expect(list.code, list.stderr).toBe(0);
  });
});
