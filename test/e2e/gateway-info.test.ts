import { afterAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  cleanupAll,
  probeHealth,
  runCli,
  runJson,
  spawnCli,
  startTestGateway,
  type Running,
  type TestGateway,
} from "./harness.js";

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const stop of stops) await stop();
  cleanupAll();
});

async function gatewayFor(options: Parameters<typeof startTestGateway>[0] = {}): Promise<TestGateway> {
  const gateway = await startTestGateway(options);
  stops.push(() => gateway.stop());
  return gateway;
}

/** `gateway start` with extra flags, resolved once /health answers on loopback. */
async function startWith(gateway: TestGateway, flags: string[]): Promise<Running> {
  const running = spawnCli(["gateway", "start", "--home", gateway.home, ...flags]);
  stops.push(async () => {
    running.child.kill("SIGTERM");
    await running.exited;
  });
  await running.waitFor(() => running.stderr.includes("Register a node"), "the gateway to start");
  expect(await probeHealth(gateway.url)).toBe(true);
  return running;
}

function serverNames(gateway: TestGateway): string {
  return new X509Certificate(readFileSync(path.join(gateway.home, "pki/server.pem"))).subjectAltName ?? "";
}

/** `devices list --json` reaching the gateway by `address` (its port), verifying the server's name. */
function devicesListAt(gateway: TestGateway, address: string) {
  return runCli([
    "devices",
    "list",
    "--home",
    gateway.home,
    "--gateway",
    `https://${address}:${gateway.port}`,
    "--json",
  ]);
}

/** 127.0.0.1:PORT as 0.0.0.0:PORT, so the gateway answers on 127.0.0.2 and 127.0.0.3 too. */
function allAddresses(listen: unknown): string {
  return String(listen).replace("127.0.0.1:", "0.0.0.0:");
}

const lanAddress = Object.values(os.networkInterfaces())
  .flat()
  .find((entry) => entry && !entry.internal && entry.family === "IPv4")?.address;

interface Info {
  gatewayId: string;
  listen: string;
  caFingerprint: string;
  previousCaFingerprint?: string;
  registerFingerprint: string;
  serverNames: string[];
  registerCommand: string;
  warning?: string;
}

describe("what a started gateway tells its operator", () => {
  it("`gateway start` on an existing home prints the CA fingerprint and the `node register` line", async () => {
    const gateway = await gatewayFor();
    await gateway.process.waitFor(
      () => gateway.process.stderr.includes("Register a node"),
      "the start notice",
    );
    expect(gateway.process.stderr).toContain(`CA fingerprint   ${gateway.caFingerprint}`);
    expect(gateway.process.stderr).toContain(
      `gatehouse node register --gateway ${gateway.url} --ca-fingerprint ${gateway.caFingerprint} --name NAME`,
    );
  });

  it("`gateway info` shows the id, address, CA fingerprints and register line, and the previous CA during an overlap", async () => {
    const gateway = await gatewayFor();
    const text = await runCli(["gateway", "info", "--home", gateway.home]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`listen           127.0.0.1:${gateway.port}`);
    expect(text.stdout).toContain(`CA fingerprint   ${gateway.caFingerprint}`);
    expect(text.stdout).toContain(`--ca-fingerprint ${gateway.caFingerprint} --name NAME`);

    const before = await runJson<Info>(["gateway", "info", "--home", gateway.home]);
    expect(before).toMatchObject({
      listen: `127.0.0.1:${gateway.port}`,
      caFingerprint: gateway.caFingerprint,
      registerFingerprint: gateway.caFingerprint,
    });
    expect(before.gatewayId).toMatch(/^gw_/);
    expect(before.previousCaFingerprint).toBeUndefined();

    const rotated = await runJson<{ nextFingerprint: string }>(["rotate", "ca", "--home", gateway.home]);
    const during = await runJson<Info>(["gateway", "info", "--home", gateway.home]);
    expect(during.caFingerprint).toBe(rotated.nextFingerprint);
    expect(during.previousCaFingerprint).toBe(gateway.caFingerprint);
    // The server certificate stays with the previous CA during the overlap: new nodes pin that one.
    expect(during.registerCommand).toContain(`--ca-fingerprint ${gateway.caFingerprint}`);
    const shown = await runCli(["gateway", "info", "--home", gateway.home]);
    expect(shown.stdout).toContain(`previous CA      ${gateway.caFingerprint} (trusted until `);
  });
});

describe("the names in the server certificate", () => {
  it("a name added to `sans` in gateway.json is in the server certificate once the gateway starts", async () => {
    const gateway = await gatewayFor({
      configure: (config) => {
        config.sans = ["127.0.0.2"];
        config.listen = allAddresses(config.listen);
      },
    });
    expect(serverNames(gateway)).toContain("IP Address:127.0.0.2");
    const byName = await devicesListAt(gateway, "127.0.0.2");
    expect(byName.code).toBe(0);
  });

  it("`gateway add-name` adds a name to gateway.json, and the next start serves a certificate with it", async () => {
    const gateway = await gatewayFor({
      configure: (config) => (config.listen = allAddresses(config.listen)),
    });
    const added = await runCli(["gateway", "add-name", "127.0.0.3", "--home", gateway.home]);
    expect(added.code).toBe(0);
    expect(added.stdout).toContain("added 127.0.0.3");
    expect(added.stdout).toContain(
      `The running gateway (pid ${gateway.process.child.pid}) serves its old certificate`,
    );
    const config = JSON.parse(readFileSync(path.join(gateway.home, "gateway.json"), "utf8")) as {
      sans: string[];
    };
    expect(config.sans).toEqual(["127.0.0.3"]);
    const again = await runJson<{ added: string[] }>([
      "gateway",
      "add-name",
      "127.0.0.3",
      "--home",
      gateway.home,
    ]);
    expect(again.added).toEqual([]);

    await gateway.stop();
    await gateway.restart();
    expect(serverNames(gateway)).toContain("IP Address:127.0.0.3");
    const byName = await devicesListAt(gateway, "127.0.0.3");
    expect(byName.code).toBe(0);
  });

  it("`gateway add-name` refuses what is not a host name or address", async () => {
    const gateway = await gatewayFor();
    const result = await runCli(["gateway", "add-name", "not a name", "--home", gateway.home]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('name "not a name" is neither an IP address nor a host name');
  });

  it("warns at start when it listens on all addresses with only loopback names, and not once a name is added", async () => {
    const gateway = await gatewayFor();
    await gateway.stop();
    const first = await startWith(gateway, ["--listen", `0.0.0.0:${gateway.port}`]);
    const warnings = () =>
      first.logLines().filter((line) => line.level === 40 && String(line.msg).includes("gateway add-name"));
    await first.waitFor(() => warnings().length > 0, "the warning");
    expect(String(warnings()[0]!.msg)).toContain(`listens on 0.0.0.0:${gateway.port}`);
    const info = await runJson<Info>([
      "gateway",
      "info",
      "--home",
      gateway.home,
      "--listen",
      `0.0.0.0:${gateway.port}`,
    ]);
    expect(info.warning).toContain("gatehouse gateway add-name HOST");
    first.child.kill("SIGTERM");
    await first.exited;

    if (!lanAddress) return; // a machine without a network address has no name to add
    await runJson(["gateway", "add-name", lanAddress, "--home", gateway.home]);
    const second = await startWith(gateway, ["--listen", `0.0.0.0:${gateway.port}`]);
    await second.waitFor(
      () => second.logLines().some((line) => line.msg === "gateway listening"),
      "the start",
    );
    expect(second.logLines().filter((line) => line.level === 40)).toEqual([]);
    expect(serverNames(gateway)).toContain(`IP Address:${lanAddress}`);
  });
});
