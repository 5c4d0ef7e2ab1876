import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { TestConnectionResult } from "../../src/node/test-connection.js";
import type { NodeStatusReport } from "../../src/node/status.js";
import {
  CLI,
  Running,
  cleanupAll,
  nodeRegisterArgs,
  registeredNode,
  runJson,
  startTestGateway,
  tempHome,
} from "./harness.js";
import { waitConnected, waitForMsg, withMsg } from "./lifecycle-fixtures.js";
import { CLIENT_CERT_SECONDS, renewalAfter, shortLifetimes } from "./short-lifetimes.js";

afterAll(cleanupAll);

/**
 * libfaketime's wrapper. The node CLI runs under it with its wall clock moved; the monotonic clock
 * is left alone (FAKETIME_DONT_FAKE_MONOTONIC=1), since faketime would otherwise move Node's timers'
 * clock too. The gateway runs on the real clock.
 */
const FAKETIME = ["/usr/bin/faketime", "/usr/local/bin/faketime"].find((file) => existsSync(file));
if (!FAKETIME) console.warn("faketime (libfaketime) is not installed: skipping the clock-skew tests");

/** The CLI with its clock moved by `offset` (faketime's syntax: "-10m", "+10s"), in its own group. */
function skewed(offset: string, args: string[]): Running {
  const child = spawn(FAKETIME!, ["-f", offset, process.execPath, CLI, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: { ...process.env, FAKETIME_DONT_FAKE_MONOTONIC: "1" },
  });
  const running = new Running(child);
  // faketime forks the CLI: stop both, whatever happens to the test.
  const killGroup = () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  };
  void running.exited.finally(killGroup);
  afterAll(killGroup);
  return running;
}

/** A skewed CLI run to its end (at most 60 s), with its exit code. */
async function skewedRun(offset: string, args: string[]): Promise<{ code: number | null; run: Running }> {
  const run = skewed(offset, args);
  const code = await Promise.race([
    run.exited,
    sleep(60_000).then(() => {
      throw new Error(`gatehouse ${args.join(" ")} did not finish\n${run.stdout}\n${run.stderr}`);
    }),
  ]);
  return { code, run };
}

/** Each test starts a gateway and skewed CLI processes: room for a loaded machine. */
const SLOW = { timeout: 180_000 };

/** "600.0 s behind" or the like, for a skew of 10 minutes give or take a loaded machine. */
const TEN_MINUTES_BEHIND = /\b(59\d|60\d)(\.\d)? s behind\b/;

describe.skipIf(!FAKETIME).concurrent("a node whose clock is off", () => {
  it(
    "10 minutes behind: test-connection names clock_skew with the skew and NTP, not connection_failed",
    SLOW,
    async () => {
      const gateway = await startTestGateway();
      const { home } = await registeredNode(gateway, "behind-test");
      const { code, run } = await skewedRun("-10m", ["node", "test-connection", "--home", home, "--json"]);
      const result = JSON.parse(run.stdout) as TestConnectionResult;
      const context = JSON.stringify(result, null, 2);
      expect(code, context).toBe(1);
      expect(result.error, context).toMatchObject({ layer: "clock", code: "clock_skew" });
      // The gateway answered (its /health is read despite the dates): the clock is what is wrong.
      expect(result.layers.find((layer) => layer.layer === "http")?.ok, context).toBe(true);
      expect(result.error!.description).toMatch(TEN_MINUTES_BEHIND);
      expect(result.error!.description).toContain("CERT_NOT_YET_VALID");
      expect(result.error!.hint).toContain("timedatectl set-ntp true");
      expect(result.error!.hint).not.toContain("test-connection");
      await gateway.stop();
    },
  );

  it("10 minutes behind: node register refuses with clock_skew and writes nothing", SLOW, async () => {
    const gateway = await startTestGateway();
    const home = tempHome("behind-register");
    const { code, run } = await skewedRun("-10m", [
      ...nodeRegisterArgs(gateway, home, { name: "behind-register" }),
      "--json",
    ]);
    const context = `${run.stdout}\n${run.stderr}`;
    expect(code, context).toBe(1);
    // The last JSON document printed (progress lines may come before it).
    const last = run.stdout.trimEnd().lastIndexOf("\n{");
    const error = JSON.parse(run.stdout.slice(last + 1)) as {
      error: string;
      error_description: string;
      hint: string;
    };
    expect(error.error, context).toBe("clock_skew");
    expect(error.error_description).toMatch(TEN_MINUTES_BEHIND);
    expect(error.hint).toContain("timedatectl set-ntp true");
    expect(existsSync(path.join(home, "node.json"))).toBe(false);
    expect(existsSync(path.join(home, "device.key"))).toBe(false);
    const pending = await runJson<{ devices: unknown[] }>([
      "devices",
      "list",
      "--pending",
      "--home",
      gateway.home,
    ]);
    expect(pending.devices).toEqual([]);
    await gateway.stop();
  });

  it(
    "10 minutes behind: node start logs clock_skew and node status shows it as the last error",
    SLOW,
    async () => {
      const gateway = await startTestGateway();
      const { home } = await registeredNode(gateway, "behind-start");
      const node = skewed("-10m", ["node", "start", "--home", home]);
      await node.waitFor(
        () => node.logLines().some((line) => line.code === "clock_skew"),
        "a clock_skew in the agent's log",
        30_000,
      );
      const logged = node.logLines().find((line) => line.code === "clock_skew")!;
      expect(String(logged.msg)).toMatch(TEN_MINUTES_BEHIND);
      expect(String(logged.hint)).toContain("timedatectl set-ntp true");
      const status = await runJson<NodeStatusReport>(["node", "status", "--home", home]);
      expect(status.lastError?.code, JSON.stringify(status)).toBe("clock_skew");
      expect(status.lastError?.message).toMatch(TEN_MINUTES_BEHIND);
      node.child.kill("SIGTERM");
      await gateway.stop();
    },
  );

  it(
    "ahead by most of a certificate's life: renewals follow the gateway's clock (no loop) and the skew is said once",
    SLOW,
    async () => {
      const gateway = await startTestGateway({
        configure: shortLifetimes({ clientCert: CLIENT_CERT_SECONDS }),
      });
      const { home } = await registeredNode(gateway, "ahead");
      // Past 2/3 of the life (where renewal is due) but short of its end, by this node's clock.
      const ahead = Math.round(CLIENT_CERT_SECONDS * 0.85);
      const node = skewed(`+${ahead}s`, ["node", "start", "--home", home]);
      await waitConnected(node, 1, 30_000);
      // The first renewal comes at 2/3 of the life by the gateway's clock: wait for it and a bit more.
      await waitForMsg(node, "certificate renewed", 1, (renewalAfter(CLIENT_CERT_SECONDS) + 30) * 1000);
      await sleep(2000);
      const renewals = withMsg(node, "certificate renewed").length;
      // Before, the node renewed back to back: hundreds in these seconds.
      expect(renewals, node.stdout).toBeLessThanOrEqual(4);
      const warnings = node.logLines().filter((line) => line.code === "clock_skew");
      expect(warnings, node.stdout).toHaveLength(1);
      expect(String(warnings[0]!.msg)).toMatch(/ahead of the gateway's/);
      node.child.kill("SIGTERM");
      await gateway.stop();
    },
  );
});
