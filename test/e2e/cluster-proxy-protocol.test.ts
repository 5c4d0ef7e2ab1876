/**
 * The caller's own address behind HAProxy: two instances on one PostgreSQL behind HAProxy in TCP
 * mode with `send-proxy-v2` (cluster-harness.ts; the instances trust only HAProxy's source address
 * for PROXY headers). Registration limits count each caller's address, `/metrics`' loopback
 * exemption follows the caller's address, and a node's session and `devices show` name the node's
 * address, not HAProxy's. A connection from HAProxy's address without a header is closed, and a
 * header from anyone else is not believed.
 */
import { expect, it } from "vitest";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import path from "node:path";
import { probeHealth } from "./harness.js";
import { BALANCER_SOURCE, type TestCluster } from "./cluster-harness.js";
import { clusterWithNodes, describeCluster, type ProxiedNode } from "./cluster-suite.js";

/** This machine's non-loopback address (eth0), to call from an address that does not look local. */
const OUTSIDE = Object.values(networkInterfaces())
  .flat()
  .find((a) => a?.family === "IPv4" && !a.internal)?.address;
const PER_ADDRESS = 3;

interface Answer {
  status: number;
  body: string;
}

describeCluster("the caller's address through HAProxy (PROXY protocol)", () => {
  let cluster: TestCluster;
  let ca: string;
  let node: ProxiedNode;
  clusterWithNodes(
    ["pp-node"],
    (started, [proxied]) => {
      cluster = started;
      node = proxied!;
      ca = readFileSync(path.join(cluster.instances[0].home, "pki", "ca.pem"), "utf8");
    },
    {
      configure: (config) => {
        config.enroll = { ...config.enroll, perAddressPerMinute: PER_ADDRESS };
      },
    },
  );

  /** A request through HAProxy from the local address `from`, on a fresh connection. */
  function through(from: string, method: string, route: string, body?: unknown): Promise<Answer> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const request = https.request(
        `${cluster.proxy.url}${route}`,
        {
          method,
          ca,
          agent: false,
          localAddress: from,
          headers: payload
            ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
            : {},
        },
        (response) => {
          let text = "";
          response.on("data", (chunk: Buffer) => (text += chunk.toString()));
          response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text }));
        },
      );
      request.on("error", reject);
      request.end(payload);
    });
  }

  it("counts registrations per caller address, not per balancer: one address limited leaves another free", async () => {
    let limited: Answer | undefined;
    // A fixed one-minute window may turn over once on the way: 2 × the limit + 1 reach it surely.
    for (let i = 0; i <= 2 * PER_ADDRESS && !limited; i++) {
      const answer = await through("127.0.0.2", "POST", "/api/v1/enroll", {});
      if (answer.status === 429) limited = answer;
      else expect(answer.status).toBe(400);
    }
    expect(limited?.body).toContain("too many registrations from 127.0.0.2");
    const other = await through("127.0.0.3", "POST", "/api/v1/enroll", {});
    expect(other.status).toBe(400);
    expect(JSON.parse(other.body)).toMatchObject({ error: "invalid_request" });
  });

  it.skipIf(!OUTSIDE)(
    "refuses /metrics without a credential to a caller that is not on this machine's loopback",
    async () => {
      const outside = await through(OUTSIDE!, "GET", "/metrics");
      expect(outside.status).toBe(401);
      expect(JSON.parse(outside.body)).toMatchObject({ error: "missing_credentials" });
      const local = await through("127.0.0.2", "GET", "/metrics");
      expect(local.status).toBe(200);
    },
  );

  it("names the node's address in its session and in devices show, not HAProxy's", async () => {
    const admin = cluster.instances[1];
    const shown = await cluster.json<{ device: { address: string | null } }>([
      "devices",
      "show",
      node.deviceId,
      "--home",
      admin.home,
    ]);
    expect(shown.device.address).toBe("127.0.0.1");
    const { nodes } = await cluster.json<{ nodes: { deviceId: string; address?: string }[] }>([
      "nodes",
      "list",
      "--home",
      admin.home,
    ]);
    expect(nodes.find((n) => n.deviceId === node.deviceId)?.address).toBe("127.0.0.1");
  });

  it("closes a connection from HAProxy's address that does not begin with a header, and counts it", async () => {
    const instance = cluster.instances[0];
    const before = await refusedInvalid(instance.port);
    const error = await tlsFrom(BALANCER_SOURCE, instance.port, Buffer.alloc(0));
    expect(error).toBeDefined();
    await expect.poll(() => refusedInvalid(instance.port), { timeout: 20_000 }).toBeGreaterThan(before);
    expect(await probeHealth(instance.url)).toBe(true);
  });

  it("does not believe a header from an address it does not trust: the connection is closed", async () => {
    const instance = cluster.instances[0];
    const header = Buffer.from("PROXY TCP4 192.0.2.99 127.0.0.1 1234 443\r\n");
    expect(await tlsFrom("127.0.0.1", instance.port, header)).toBeDefined();
    expect(await probeHealth(instance.url)).toBe(true);
  });

  /** A TLS handshake from `from` straight to an instance after `prefix`: its error, or undefined. */
  function tlsFrom(from: string, port: number, prefix: Buffer): Promise<Error | undefined> {
    return new Promise((resolve) => {
      const raw = net.connect({ host: "127.0.0.1", port, localAddress: from }, () => {
        if (prefix.length) raw.write(prefix);
        const secure = tls.connect({ socket: raw, ca, servername: "localhost" }, () => {
          secure.destroy();
          resolve(undefined);
        });
        secure.on("error", (error) => resolve(error));
      });
      raw.on("error", (error) => resolve(error));
    });
  }

  /** gatehouse_refusals_total{code="invalid_request"} on one instance, read from its loopback. */
  async function refusedInvalid(port: number): Promise<number> {
    const text = await new Promise<string>((resolve, reject) => {
      https
        .get(`https://127.0.0.1:${port}/metrics`, { ca, agent: false }, (response) => {
          let body = "";
          response.on("data", (chunk: Buffer) => (body += chunk.toString()));
          response.on("end", () => resolve(body));
        })
        .on("error", reject);
    });
    const line = text
      .split("\n")
      .find((l) => l.startsWith('gatehouse_refusals_total{code="invalid_request"}'));
    return line ? Number(line.split(" ").pop()) : 0;
  }
});
