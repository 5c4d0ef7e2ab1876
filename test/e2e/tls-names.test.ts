import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import {
  cleanupAll,
  listDevices,
  nodeRegisterArgs,
  registeredNode,
  runCli,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";
import { opensslSelfSigned } from "./openssl.js";
import { testConnection } from "./lifecycle-fixtures.js";

/**
 * The right gateway reached by a name its certificate does not hold is named as such (which names
 * it covers, which one was used, the command that adds it), and a TLS-terminating proxy in front
 * of the gateway is named as a proxy, not as "another gateway".
 */
let gateway: TestGateway;
let node: { home: string };
/** The same gateway, by an address its certificate does not cover (127.0.0.2 is loopback too). */
let uncoveredUrl: string;

beforeAll(async () => {
  gateway = await startTestGateway({
    configure: (config) => {
      config.listen = String(config.listen).replace("127.0.0.1", "0.0.0.0");
    },
  });
  uncoveredUrl = `https://127.0.0.2:${gateway.port}`;
  node = await registeredNode(gateway, "lan-node");
}, 60_000);

afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

function nodeHomeAt(url: string): string {
  const home = tempHome("tls-names");
  execFileSync("cp", ["-a", node.home + "/.", home]);
  const file = path.join(home, "node.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  writeFileSync(file, JSON.stringify({ ...config, gatewayUrl: url }, null, 2));
  return home;
}

describe("a server certificate that does not cover the name used", () => {
  it("register names the names covered, the one used and the command that adds it", async () => {
    const home = tempHome("lan-register");
    const result = await runCli(
      nodeRegisterArgs(gateway, home, { url: uncoveredUrl, name: "by-lan-address" }),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("san_mismatch");
    expect(result.stderr).toContain("127.0.0.2");
    expect(result.stderr).toMatch(/covers[^\n]*127\.0\.0\.1/);
    expect(result.stderr).toContain("gatehouse gateway add-name 127.0.0.2");
    expect(result.stderr).not.toMatch(/another gateway|another TLS service/i);
    expect(existsSync(path.join(home, "device.pem"))).toBe(false);
    expect((await listDevices(gateway, true)).map((d) => d.name)).not.toContain("by-lan-address");
  });

  it("test-connection names it at the TLS layer", async () => {
    const { exit, result } = await testConnection(nodeHomeAt(uncoveredUrl));
    expect(exit).not.toBe(0);
    expect(result.error).toMatchObject({ layer: "tls", code: "san_mismatch" });
    expect(result.error!.description).toContain("127.0.0.2");
    expect(result.error!.description).toMatch(/covers[^\n]*127\.0\.0\.1/);
    expect(result.error!.hint).toContain("gatehouse gateway add-name 127.0.0.2");
  });

  it("an API request through the CLI names it too", async () => {
    const result = await runCli(["nodes", "list", "--home", nodeHomeAt(uncoveredUrl), "--json"]);
    expect(result.code).not.toBe(0);
    const body = JSON.parse(result.stdout) as { error: string; error_description: string; hint: string };
    expect(body.error).toBe("san_mismatch");
    expect(body.error_description).toContain("127.0.0.2");
    expect(body.error_description).toMatch(/covers[^\n]*127\.0\.0\.1/);
    expect(body.hint).toContain("gatehouse gateway add-name 127.0.0.2");
  });

  it("the command the hint names makes the address work, after a restart", async () => {
    const added = await runCli(["gateway", "add-name", "127.0.0.2", "--home", gateway.home]);
    expect(added.code, added.stderr).toBe(0);
    await gateway.stop();
    await gateway.restart();
    const { exit, result } = await testConnection(nodeHomeAt(uncoveredUrl));
    expect(result.error).toBeNull();
    expect(exit).toBe(0);
  });
});

describe("a TLS-terminating reverse proxy in front of the gateway", () => {
  let proxy: https.Server;
  let proxyUrl: string;

  beforeAll(async () => {
    // The proxy's own certificate, from a CA that is not the gateway's (a public CA, in real life).
    const { key, cert } = opensslSelfSigned(path.dirname(tempHome("proxy")), "proxy", {
      commonName: "gateway.example.com",
      altNames: "DNS:gateway.example.com,IP:127.0.0.1",
    });
    proxy = https.createServer({ key, cert }, (request, response) => {
      const upstream = https.request(
        `${gateway.url}${request.url}`,
        { method: request.method, headers: request.headers, rejectUnauthorized: false },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      upstream.on("error", () => response.destroy());
      request.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    proxyUrl = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  });

  afterAll(() => {
    proxy.closeAllConnections();
    proxy.close();
  });

  it("test-connection names the proxy and the ways out", async () => {
    const { exit, result } = await testConnection(nodeHomeAt(proxyUrl));
    expect(exit).not.toBe(0);
    expect(result.error).toMatchObject({ layer: "tls", code: "ca_mismatch" });
    expect(result.error!.description).toMatch(/TLS-terminating proxy/);
    expect(result.error!.description).toContain("gateway.example.com");
    expect(result.error!.description).not.toContain("another Gatehouse gateway");
    expect(result.error!.hint).toMatch(/passthrough/i);
    expect(result.error!.hint).toMatch(/API key/);
  });

  it("register names the proxy before anything is sent", async () => {
    const home = tempHome("proxy-register");
    const result = await runCli(nodeRegisterArgs(gateway, home, { url: proxyUrl, name: "behind-proxy" }));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ca_mismatch");
    expect(result.stderr).toMatch(/TLS-terminating proxy/);
    expect(result.stderr).toMatch(/passthrough/i);
    expect((await listDevices(gateway, true)).map((d) => d.name)).not.toContain("behind-proxy");
  });
});
