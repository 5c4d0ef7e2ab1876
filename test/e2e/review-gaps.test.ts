import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { SHORT_LIFETIMES_VARIABLE } from "../../src/config/duration.js";
import {
  listDevices,
  nodeRegisterArgs,
  runCli,
  runJson,
  startRegistration,
  tempHome,
  type Running,
} from "./harness.js";
import { gatewayForFile } from "./file-gateway.js";

// Lifetimes here must follow the product's rule (at least 1m): no test-only allowance.
delete process.env[SHORT_LIFETIMES_VARIABLE];
const env = { ...process.env };
delete env[SHORT_LIFETIMES_VARIABLE];

const gateway = gatewayForFile();

interface ErrorJson {
  error: string;
  error_description: string;
  hint: string;
}

interface DeviceShow {
  device: { deviceId: string; name: string; status: string };
}

const registrations: Running[] = [];
afterEach(() => {
  for (const registration of registrations.splice(0)) registration.child.kill("SIGTERM");
});

async function pending(name: string) {
  const started = await startRegistration(gateway, name);
  registrations.push(started.register);
  return started;
}

async function fails(args: string[]): Promise<{ code: number | null; body: ErrorJson }> {
  const result = await runCli([...args, "--json"], { env });
  let body: ErrorJson;
  try {
    body = JSON.parse(result.stdout.trim().split("\n").pop() ?? "") as ErrorJson;
  } catch {
    throw new Error(`no JSON error: exit ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
  return { code: result.code, body };
}

async function enrollToken(): Promise<string> {
  const created = await runJson<{ token: string }>([
    "enroll",
    "create",
    "--expires",
    "10m",
    "--home",
    gateway.home,
  ]);
  return created.token;
}

describe("devices commands take a device name, through the gateway's one resolver", () => {
  it("show and approve find a pending device by its name; revoke an approved one", async () => {
    const { register, device } = await pending("rg-laptop");
    const shown = await runJson<DeviceShow>(["devices", "show", "rg-laptop", "--home", gateway.home]);
    expect(shown.device).toMatchObject({ deviceId: device.deviceId, status: "pending" });

    await runJson(["devices", "approve", "RG-Laptop", "--home", gateway.home]);
    expect(await register.exited).toBe(0);
    const approved = await runJson<DeviceShow>(["devices", "show", "rg-laptop", "--home", gateway.home]);
    expect(approved.device).toMatchObject({ deviceId: device.deviceId, status: "approved" });

    await runJson(["devices", "revoke", "rg-laptop", "--home", gateway.home]);
    const revoked = await runJson<DeviceShow>(["devices", "show", device.deviceId, "--home", gateway.home]);
    expect(revoked.device.status).toBe("revoked");
  });

  it("deny finds a pending device by its name", async () => {
    const { register } = await pending("rg-stranger");
    await runJson(["devices", "deny", "rg-stranger", "--home", gateway.home]);
    expect(await register.exited).toBe(1);
    expect(register.stderr + register.stdout).toContain("device_denied");
  });

  it("a name two devices share is refused as ambiguous, naming both ids, and nothing changes", async () => {
    const first = await pending("rg-twin");
    const second = await pending("rg-twin");
    for (const verb of ["show", "approve", "deny", "revoke"]) {
      const { code, body } = await fails(["devices", verb, "rg-twin", "--home", gateway.home]);
      expect(code).toBe(1);
      expect(body.error).toBe("invalid_request");
      expect(body.error_description).toContain("ambiguous");
      expect(body.error_description).toContain(first.device.deviceId);
      expect(body.error_description).toContain(second.device.deviceId);
      expect(body.hint).toContain(`gatehouse devices ${verb} `);
    }
    const twins = (await listDevices(gateway)).filter((d) => d.name === "rg-twin");
    expect(twins.map((d) => d.status)).toEqual(["pending", "pending"]);
    // The user code still tells them apart.
    await runJson(["devices", "approve", first.device.userCode!, "--home", gateway.home]);
    expect(await first.register.exited).toBe(0);
  });

  it("an unknown device is not_found; ids and user codes keep working", async () => {
    const { body } = await fails(["devices", "show", "rg-nobody", "--home", gateway.home]);
    expect(body.error).toBe("not_found");
    const { register, device } = await pending("rg-by-code");
    const byId = await runJson<DeviceShow>(["devices", "show", device.deviceId, "--home", gateway.home]);
    expect(byId.device.name).toBe("rg-by-code");
    await runJson(["devices", "approve", device.userCode!, "--home", gateway.home]);
    expect(await register.exited).toBe(0);
  });
});

describe("a refused node register creates nothing", () => {
  it("leaves no home behind, and registering again in it works", async () => {
    const home = tempHome("rg-refused");
    const args = nodeRegisterArgs(gateway, home, { name: "rg-refused" });
    const { body } = await fails([...args, "--enroll-token", "ghe_bogus"]);
    expect(body.error).toBe("invalid_token");
    expect(existsSync(home)).toBe(false);

    const again = await runCli([...args, "--enroll-token", await enrollToken(), "--json"], { env });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(readdirSync(home)).toEqual(
      expect.arrayContaining(["ca.pem", "device.key", "device.pem", "node.json"]),
    );
  });

  it("keeps what a home held before, the device key included with --new-key", async () => {
    const home = tempHome("rg-kept");
    mkdirSync(home, { recursive: true });
    writeFileSync(path.join(home, "notes.txt"), "mine\n");
    const args = nodeRegisterArgs(gateway, home, { name: "rg-kept" });
    await fails([...args, "--enroll-token", "ghe_bogus"]);
    expect(readdirSync(home)).toEqual(["notes.txt"]);

    const first = await runCli([...args, "--enroll-token", await enrollToken(), "--json"], { env });
    expect(first.code, first.stderr).toBe(0);
    const before = Object.fromEntries(
      readdirSync(home).map((file) => [file, readFileSync(path.join(home, file), "utf8")]),
    );
    const { body } = await fails([...args, "--new-key", "--enroll-token", "ghe_bogus"]);
    expect(body.error).toBe("invalid_token");
    const after = Object.fromEntries(
      readdirSync(home).map((file) => [file, readFileSync(path.join(home, file), "utf8")]),
    );
    expect(after).toEqual(before);
  });
});

describe("lifetimes given by flag or API follow the config's rule (at least 1m)", () => {
  it("refuses a lifetime under a minute, naming the flag and the value", async () => {
    const cases: [string[], string][] = [
      [["keys", "create", "--name", "rg-short", "--role", "viewer", "--expires", "5s"], "--expires"],
      [["enroll", "create", "--expires", "5s"], "--expires"],
      [["keys", "rotate", "anykey", "--grace", "5s"], "--grace"],
      [["rotate", "ca", "--overlap", "5s"], "--overlap"],
    ];
    for (const [args, flag] of cases) {
      const { code, body } = await fails([...args, "--home", gateway.home]);
      expect(code, args.join(" ")).toBe(2);
      expect(body.error).toBe("invalid_request");
      expect(body.error_description).toContain(flag);
      expect(body.error_description).toContain('"5s"');
      expect(body.error_description).toContain("at least 1m");
    }
    const keys = await runJson<{ keys: { name: string }[] }>(["keys", "list", "--home", gateway.home]);
    expect(keys.keys.map((k) => k.name)).not.toContain("rg-short");
  });

  it("a grace of 0 ends the old key at once", async () => {
    const created = await runJson<{ key: { keyId: string } }>([
      "keys",
      "create",
      "--name",
      "rg-leaked",
      "--role",
      "viewer",
      "--home",
      gateway.home,
    ]);
    const rotated = await runJson<{ previous: { graceUntil: string } }>([
      "keys",
      "rotate",
      created.key.keyId,
      "--grace",
      "0s",
      "--home",
      gateway.home,
    ]);
    expect(new Date(rotated.previous.graceUntil).getTime()).toBeLessThanOrEqual(Date.now());
  });

  it("the API refuses the same values in a body", async () => {
    const admin = path.join(gateway.home, "admin");
    const post = (route: string, body: unknown) =>
      new Promise<{ status: number; body: ErrorJson }>((resolve, reject) => {
        const request = https.request(
          gateway.url + route,
          {
            method: "POST",
            ca: readFileSync(path.join(admin, "ca.pem")),
            cert: readFileSync(path.join(admin, "admin.pem")),
            key: readFileSync(path.join(admin, "admin.key")),
            headers: { "content-type": "application/json" },
          },
          (response) => {
            let text = "";
            response.on("data", (chunk: Buffer) => (text += chunk.toString()));
            response.on("end", () =>
              resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as ErrorJson }),
            );
          },
        );
        request.on("error", reject);
        request.end(JSON.stringify(body));
      });
    for (const [route, body, field] of [
      ["/api/v1/keys", { name: "rg-api", role: "viewer", expires: "5s" }, "expires"],
      ["/api/v1/keys", { name: "rg-api", role: "viewer", expires: "0s" }, "expires"],
      ["/api/v1/enroll-tokens", { expires: "30s" }, "expires"],
      ["/api/v1/ca/rotate", { overlap: "5s" }, "overlap"],
    ] as const) {
      const reply = await post(route, body);
      expect(reply.status, JSON.stringify(body)).toBe(400);
      expect(reply.body.error).toBe("invalid_request");
      expect(reply.body.error_description).toMatch(new RegExp(`^${field}: ".+" is too short`));
    }
  });
});

describe("an unexpected failure in the CLI itself", () => {
  it("is internal_error with a local hint naming the command, not the gateway's log", async () => {
    const file = path.join(path.dirname(tempHome("rg-file")), "a-file");
    writeFileSync(file, "not a directory\n");
    const { code, body } = await fails(["gateway", "init", "--home", path.join(file, "home")]);
    expect(code).toBe(1);
    expect(body.error).toBe("internal_error");
    expect(body.hint).not.toContain("gateway's log");
    expect(body.hint).toContain("gatehouse gateway init");
  });
});
