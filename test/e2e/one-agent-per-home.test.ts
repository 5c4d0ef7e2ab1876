import { describe, expect, it } from "vitest";
import { registeredNode, runCli, runJson, spawnCli, type Running } from "./harness.js";
import { gatewayForFile } from "./file-gateway.js";
import { nodesList, waitConnected } from "./lifecycle-fixtures.js";

const gateway = gatewayForFile();

/** A `node start` that either connects or exits: whichever comes first. */
async function startOutcome(node: Running): Promise<{ exitCode: number | null } | "connected"> {
  return Promise.race([
    node.exited.then((exitCode) => ({ exitCode })),
    waitConnected(node, 1, 30_000).then(() => "connected" as const),
  ]);
}

interface StatusJson {
  running: boolean;
  pid: number | null;
  state: string;
}

describe("one node agent per home", () => {
  it("refuses a second `node start` on the same home, naming the agent that runs", async () => {
    const { home, deviceId } = await registeredNode(gateway, "single");
    const first = spawnCli(["node", "start", "--home", home]);
    await waitConnected(first);

    const second = spawnCli(["node", "start", "--home", home]);
    const outcome = await startOutcome(second);
    expect(outcome, second.stdout + second.stderr).toEqual({ exitCode: 1 });
    const said = second.stdout + second.stderr;
    expect(said).toContain("already_running");
    expect(said).toContain(`pid ${first.child.pid}`);

    // The first agent is untouched: still the one session, and `node status` names it.
    const status = await runJson<StatusJson>(["node", "status", "--home", home]);
    expect(status).toMatchObject({ running: true, pid: first.child.pid, state: "connected" });
    expect((await nodesList(gateway)).map((n) => n.deviceId)).toEqual([deviceId]);

    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    // A clean stop gives the home back at once.
    const third = spawnCli(["node", "start", "--home", home]);
    expect(await startOutcome(third)).toBe("connected");
    third.child.kill("SIGTERM");
    await third.exited;
  });

  it("starts again after the agent that held the home was killed (kill -9 leaves no lock behind)", async () => {
    const { home } = await registeredNode(gateway, "crashed");
    const first = spawnCli(["node", "start", "--home", home]);
    await waitConnected(first);
    first.child.kill("SIGKILL");
    await first.exited;

    const next = spawnCli(["node", "start", "--home", home]);
    expect(await startOutcome(next), next.stdout + next.stderr).toBe("connected");
    const status = await runJson<StatusJson>(["node", "status", "--home", home]);
    expect(status).toMatchObject({ running: true, pid: next.child.pid });

    // And the one that now runs holds the home in turn.
    const again = await runCli(["node", "start", "--home", home], { timeoutMs: 30_000 });
    expect(again.code).toBe(1);
    expect(again.stdout + again.stderr).toContain(`pid ${next.child.pid}`);
    next.child.kill("SIGTERM");
    await next.exited;
  });
});
