/**
 * A stop signal that arrives while `gateway start` is still starting (a service manager's SIGTERM,
 * a script that saw the process appear) stops the gateway cleanly once it is up: its pid file is
 * removed and the exit is 0. A second signal leaves at once with 128 + the signal's number.
 *
 * The start is held at a known point by a secret reference (`tokens.hashKey = op://…`) whose `op`
 * stand-in waits for a gate file, so the signal lands inside the start without any timing.
 */
import { afterAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cleanupAll, freePort, runJson, spawnCli, tempHome } from "./harness.js";

afterAll(cleanupAll);

const HASH_KEY = "0f9e8d7c6b5a49382716f5e4d3c2b1a0ffeeddccbbaa";

/** A gateway home whose start waits inside `op read` until `gate` exists; `entered` marks the wait. */
async function heldStart(): Promise<{ home: string; env: NodeJS.ProcessEnv; gate: string; entered: string }> {
  const port = await freePort();
  const home = tempHome("stop-signal");
  await runJson(["gateway", "init", "--home", home, "--listen", `127.0.0.1:${port}`]);
  const dir = path.dirname(home);
  const gate = path.join(dir, "gate");
  const entered = path.join(dir, "entered");
  // The stand-in `op` is found on the PATH, as the real one would be.
  const bin = path.join(dir, "bin");
  mkdirSync(bin);
  const op = path.join(bin, "op");
  writeFileSync(
    op,
    `#!/bin/sh\n: > "${entered}"\nwhile [ ! -e "${gate}" ]; do sleep 0.05; done\nprintf '%s' '${HASH_KEY}'\n`,
  );
  chmodSync(op, 0o755);
  const config = path.join(home, "gateway.json");
  const json = JSON.parse(readFileSync(config, "utf8")) as Record<string, unknown>;
  json.tokens = { hashKey: "op://Infra/gatehouse/hash-key" };
  writeFileSync(config, JSON.stringify(json, null, 2));
  return { home, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, gate, entered };
}

describe("gateway start and a stop signal during its start", () => {
  it("a SIGTERM during the start stops the gateway cleanly once it is up: exit 0, pid file removed", async () => {
    const { home, env, gate, entered } = await heldStart();
    const gateway = spawnCli(["gateway", "start", "--home", home], env);
    await gateway.waitFor(() => existsSync(entered), "the start to reach the secret reference");
    gateway.child.kill("SIGTERM");
    writeFileSync(gate, "");
    expect(await gateway.exited).toBe(0);
    expect(gateway.child.signalCode).toBeNull();
    expect(gateway.stderr + gateway.stdout).toContain("shutting down");
    expect(existsSync(path.join(home, "gateway.pid"))).toBe(false);
  });

  it("a second signal before the start finished leaves at once with 130 (SIGINT)", async () => {
    const { home, env, entered } = await heldStart();
    const gateway = spawnCli(["gateway", "start", "--home", home], env);
    await gateway.waitFor(() => existsSync(entered), "the start to reach the secret reference");
    gateway.child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 200));
    gateway.child.kill("SIGINT");
    expect(await gateway.exited).toBe(130);
  });
});
