import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { GATEWAY_LOCK_FILE } from "../../src/gateway/gateway-lock.js";
import { AGENT_LOCK_FILE } from "../../src/node/agent-lock.js";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CLI,
  Running,
  cleanupAll,
  freePort,
  registeredNode,
  spawnCli,
  startTestGateway,
  tempHome,
} from "./harness.js";

afterAll(() => cleanupAll());

/** Quotes a word for `sh -c`. */
function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The CLI on a pseudo-terminal (util-linux `script`): its standard output is a TTY, as in a
 * terminal window. Everything it prints arrives on the Running's stdout.
 */
function onTerminal(args: string[]): Running {
  const command = [process.execPath, CLI, ...args].map(shellWord).join(" ");
  const running = new Running(
    spawn("script", ["-qfec", command, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"], detached: true }),
  );
  return running;
}

/**
 * Stops a process started with onTerminal: its whole process group, script and the CLI. `script`
 * may exit before the CLI has finished stopping, and it runs the CLI in a session of its own (so
 * not in its process group): this waits until no process of the group is left (kill(-pgid, 0)
 * fails with ESRCH) and until the process that holds `lockFile` (the home's gateway.lock or
 * agent.lock) has exited, so the next start on the same home does not find the first one there.
 */
async function stopGroup(running: Running, lockFile: string): Promise<void> {
  const group = -running.child.pid!;
  try {
    process.kill(group, "SIGTERM");
  } catch {
    // Already gone.
  }
  await running.exited;
  for (let waited = 0; isAlive(group); waited += 50) {
    if (waited === 30_000) forceKill(group);
    await sleep(50);
  }
  const holder = lockHolder(lockFile);
  if (holder === undefined) return;
  try {
    process.kill(holder, "SIGTERM");
  } catch {
    // Already gone.
  }
  for (let waited = 0; isAlive(holder); waited += 50) {
    if (waited === 30_000) forceKill(holder);
    await sleep(50);
  }
}

/** The pid in a home lock file (config/home-lock.ts), or undefined when there is none. */
function lockHolder(lockFile: string): number | undefined {
  try {
    const { pid } = JSON.parse(readFileSync(lockFile, "utf8")) as { pid?: unknown };
    return typeof pid === "number" && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function forceKill(group: number): void {
  try {
    process.kill(group, "SIGKILL");
  } catch {
    // Gone meanwhile.
  }
}

function isAlive(group: number): boolean {
  try {
    process.kill(group, 0);
    return true;
  } catch {
    return false;
  }
}

const LISTENING = /listening/i;

/** Text without its colour codes (SGR sequences), as a reader sees it. */
function plain(text: string): string {
  // eslint-disable-next-line no-control-regex -- ESC is what is being removed
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

describe("logs on a terminal", () => {
  it("gateway start on a TTY prints readable lines, one of them saying it listens", async () => {
    const home = tempHome("tty-gateway");
    const port = await freePort();
    const gateway = onTerminal(["gateway", "start", "--home", home, "--listen", `0.0.0.0:${port}`]);
    try {
      await gateway.waitFor(
        () => /INFO\s+gateway listening/.test(plain(gateway.stdout)),
        "the listening line",
      );
      const lines = plain(gateway.stdout).split(/\r?\n/);
      expect(lines.filter((line) => line.trimStart().startsWith("{"))).toEqual([]);
      // One log line says it listens (fastify's own "Server listening" lines are not printed).
      const logLines = lines.filter((line) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} /.test(line));
      expect(logLines.filter((line) => LISTENING.test(line))).toHaveLength(1);
      expect(gateway.stdout).not.toContain("Server listening");
      expect(logLines.find((line) => LISTENING.test(line))).toContain(`url=https://127.0.0.1:${port}`);
    } finally {
      await stopGroup(gateway, path.join(home, GATEWAY_LOCK_FILE));
    }
  });

  it("with --log-format json on a TTY, and without a TTY, the gateway logs JSON with one listening entry", async () => {
    const home = tempHome("json-gateway");
    const port = await freePort();
    const onTty = onTerminal([
      "gateway",
      "start",
      "--home",
      home,
      "--listen",
      `0.0.0.0:${port}`,
      "--log-format",
      "json",
    ]);
    try {
      await onTty.waitFor(
        () => onTty.stdout.includes('"msg":"gateway listening"'),
        "the JSON listening line",
      );
      expect(onTty.stdout).not.toMatch(/INFO\s+gateway listening/);
    } finally {
      await stopGroup(onTty, path.join(home, GATEWAY_LOCK_FILE));
    }

    const piped = spawnCli(["gateway", "start", "--home", home, "--listen", `0.0.0.0:${port}`]);
    try {
      await piped.waitFor(
        () => piped.logLines().some((line) => line.msg === "gateway listening"),
        "the start",
      );
      expect(piped.logLines().filter((line) => LISTENING.test(String(line.msg)))).toHaveLength(1);
      expect(typeof piped.logLines()[0]!.time).toBe("number");
    } finally {
      piped.child.kill("SIGTERM");
      await piped.exited;
    }
  });

  it("a wrong --log-format is wrong usage", async () => {
    const home = tempHome("bad-format");
    const result = spawnCli(["gateway", "start", "--home", home, "--log-format", "yaml"]);
    expect(await result.exited).toBe(2);
    expect(result.stderr).toContain('--log-format "yaml" is neither json nor pretty');
  });

  it("node start on a TTY prints readable lines; JSON without one", async () => {
    const gateway = await startTestGateway();
    try {
      const node = await registeredNode(gateway, "tty-node");
      const agent = onTerminal(["node", "start", "--home", node.home]);
      try {
        await agent.waitFor(() => /INFO\s+.*session \S+ open/.test(plain(agent.stdout)), "the session line");
        expect(agent.stdout.split(/\r?\n/).filter((line) => line.trimStart().startsWith("{"))).toEqual([]);
      } finally {
        await stopGroup(agent, path.join(node.home, AGENT_LOCK_FILE));
      }
      const piped = spawnCli(["node", "start", "--home", node.home]);
      try {
        await piped.waitFor(
          () => piped.logLines().some((line) => /session \S+ open/.test(String(line.msg))),
          "the JSON session line",
        );
      } finally {
        piped.child.kill("SIGTERM");
        await piped.exited;
      }
    } finally {
      await gateway.stop();
    }
  });
});
