import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { spawnCli, type Running } from "./harness.js";
import { waitConnected } from "./lifecycle-fixtures.js";

/**
 * Starts the node agent (`gatehouse node start`) on a node home that allows `allow`: node.json's
 * `exec.allow` is set to that list first, its other settings kept. Resolves once the agent's first
 * session is connected; rejects (with the agent's output) when it is not within 20 s. `env`
 * replaces the agent's environment, e.g. to hold an API key an `env://` reference reads.
 */
export async function startAgentAllowing(
  home: string,
  allow: string[],
  env?: NodeJS.ProcessEnv,
): Promise<Running> {
  const file = path.join(home, "node.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  config.exec = { allow };
  writeFileSync(file, JSON.stringify(config, null, 2));
  const agent = spawnCli(["node", "start", "--home", home], env);
  await waitConnected(agent);
  return agent;
}

/** Stops an agent as a service manager does (SIGTERM, its clean shutdown) and waits for it to exit. */
export async function stopAgent(agent: Running | undefined): Promise<void> {
  if (!agent) return;
  agent.child.kill("SIGTERM");
  await agent.exited;
}
