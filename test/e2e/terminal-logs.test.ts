import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
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
 * may exit before the CLI has finished stopping, so this waits until no process of the group is
 * left (kill(-pgid, 0) fails with ESRCH): the next start on the same home must not find the first
 * one still holding it.
 */
async function stopGroup(running: Running): Promise<void> {
  const group = -running.child.pid!;
  try {
    process.kill(group, "SIGTERM");
  } catch {
    // Already gone.
  }
  await running.exited;
  for (let waited = 0; groupAlive(group); waited += 50) {
    if (waited === 30_000) killGroup(group);
    await sleep(50);
  }
}

function killGroup(group: number): void {
  try {
    process.kill(group, "SIGKILL");
  } catch {
    // Gone meanwhile.
  }
}

function groupAlive(group: number): boolean {
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
      await stopGroup(gateway);
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
      await stopGroup(onTty);
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
        await stopGroup(agent);
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
