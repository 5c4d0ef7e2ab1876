/**
 * The CLI loads a command's implementation only when that command runs (lazyAction in
 * src/cli/run.ts): `gatehouse --help` loaded ≈ 850 modules (fastify, SQLite, x509, jose, pino…)
 * before it printed a line. What is checked here is what a user would notice without a stopwatch:
 * which modules a run loads (recorded by a loader hook, test/fixtures/record-modules.mjs), that
 * every command's help and usage errors read exactly as before, and that each command still runs.
 * Runs the built CLI (dist/cli/main.js): build first.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, cleanupAll, tempHome } from "./e2e/harness.js";

const RECORDER = fileURLToPath(new URL("./fixtures/record-modules.mjs", import.meta.url));
const DIST = path.dirname(path.dirname(CLI));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** URLs of every module the process loaded (with `record`). */
  modules: string[];
}

const scratch = mkdtempSync(path.join(os.tmpdir(), "gh-cli-lazy-"));
let runs = 0;

/** Runs the CLI with a home of its own (HOME too: nothing of this machine's leaks into help). */
function run(args: string[], options: { record?: boolean } = {}): Promise<Run> {
  const record = options.record ? path.join(scratch, `modules-${++runs}.txt`) : undefined;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: scratch,
    GATEHOUSE_HOME: path.join(scratch, "default-home"),
    NO_COLOR: "1",
    ...(record ? { GATEHOUSE_RECORD_MODULES: record } : {}),
  };
  const argv = [...(record ? ["--import", RECORDER] : []), CLI, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { env, cwd: scratch, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      let modules: string[] = [];
      if (record) {
        try {
          modules = readFileSync(record, "utf8").split("\n").filter(Boolean);
        } catch {
          modules = [];
        }
      }
      resolve({ code, stdout, stderr, modules });
    });
  });
}

/** The npm packages among the loaded modules, by name (`@scope/name` or `name`). */
function packagesOf(modules: string[]): string[] {
  const names = modules
    .map((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1])
    .filter((name): name is string => name !== undefined);
  return [...new Set(names)].sort();
}

/** The project's own modules among them, as paths under dist/ ("cli/main.js"). */
function ownModulesOf(modules: string[]): string[] {
  const own = modules
    .filter((url) => url.startsWith("file://") && !url.includes("/node_modules/"))
    .map((url) => fileURLToPath(url))
    .filter((file) => file.startsWith(DIST + path.sep))
    .map((file) => path.relative(DIST, file).split(path.sep).join("/"));
  return [...new Set(own)].sort();
}

/** What defining the commands may load: the definitions and the few small modules they use. */
const DEFINITION_MODULE =
  /^(cli\/(main|run|output|target-options|log-format-option|[a-z-]+-commands)\.js|protocol\/(version|errors|safe-text)\.js|config\/paths\.js)$/;

/** What a command's implementation loads, and help must not: the heavy dependencies. */
const HEAVY = [
  "fastify",
  "@fastify/websocket",
  "better-sqlite3",
  "kysely",
  "@peculiar/x509",
  "reflect-metadata",
  "tsyringe",
  "jose",
  "pino",
  "zod",
  "ws",
  "prom-client",
];

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  cleanupAll();
});

describe("help, version and wrong usage load only the command definitions", () => {
  it.each([
    [["--help"]],
    [["--version"]],
    [["gateway", "start", "--help"]],
    [["nodes", "exec", "--help"]],
    [["help", "devices"]],
    [["node", "register", "--no-such-flag"]],
    [["frobnicate"]],
  ])("gatehouse %j loads commander and no other package", async (args) => {
    const result = await run(args, { record: true });
    // Help and the version exit 0; a wrong flag or command exits 2, as before.
    expect(result.code).toBe(args.includes("--no-such-flag") || args.includes("frobnicate") ? 2 : 0);
    expect(result.modules.length).toBeGreaterThan(0);
    expect(packagesOf(result.modules)).toEqual(["commander"]);
    expect(ownModulesOf(result.modules).filter((m) => !DEFINITION_MODULE.test(m))).toEqual([]);
  });

  it("a command that runs loads what it does (the recorder sees it)", async () => {
    const result = await run(["config", "explain", "--home", path.join(scratch, "empty"), "--json"], {
      record: true,
    });
    // An empty home: the command ran (config_missing is its answer), so it loaded the config code.
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ error: "config_missing" });
    expect(packagesOf(result.modules)).toContain("zod");
    expect(ownModulesOf(result.modules)).toContain("cli/config-actions.js");
  });

  it("node test-connection loads neither the agent, x509, jose, pino nor the gateway", async () => {
    const result = await run(["node", "test-connection", "--home", path.join(scratch, "no-node"), "--json"], {
      record: true,
    });
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, error: { code: "config_missing" } });
    const heavy = packagesOf(result.modules).filter((name) => HEAVY.includes(name));
    // zod reads node.json, ws opens the session: nothing else of the heavy list.
    expect(heavy).toEqual(["ws", "zod"]);
    const own = ownModulesOf(result.modules);
    expect(
      own.filter((m) =>
        /^(gateway|store|audit|auth)\/|^node\/(agent|register|executor)\.js$|^pki\/x509\.js$/.test(m),
      ),
    ).toEqual([]);
  });
});

/** The sub-commands a help text lists under "Commands:" (without `help`). */
function subcommandsOf(help: string): string[] {
  const section = help.split("\nCommands:\n")[1] ?? "";
  return section
    .split("\n")
    .filter((line) => /^ {2}\S/.test(line))
    .map((line) => line.trim().split(/\s+/)[0]!)
    .filter((name) => name !== "help");
}

/** Runs `fn` over `items`, `limit` at a time (the machines have two cores). */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!);
      }
    }),
  );
  return results;
}

/** One run as the snapshot keeps it; the run's scratch folder (a new name each time) as <scratch>. */
const show = (args: string[], r: Run) =>
  `$ gatehouse ${args.join(" ")}\nexit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`.replaceAll(
    scratch,
    "<scratch>",
  );

describe("help and usage errors read exactly as before", () => {
  it("every command's --help, and the usage errors, match the snapshot", async () => {
    // Walk the tree as a user would: every command listed in a help leads to its own help.
    const paths: string[][] = [];
    let level: string[][] = [[]];
    while (level.length) {
      const helps = await mapLimited(level, 3, (p) => run([...p, "--help"]));
      const nextLevel: string[][] = [];
      level.forEach((p, i) => {
        paths.push(p);
        for (const sub of subcommandsOf(helps[i]!.stdout)) nextLevel.push([...p, sub]);
      });
      level = nextLevel;
    }
    expect(paths.length).toBeGreaterThan(40);
    const cases = [
      ...paths.map((p) => [...p, "--help"]),
      [],
      ["-V"],
      ["help"],
      ["frobnicate"],
      ["--json", "frobnicate"],
      ["node"],
      ["node", "nosuch"],
      ["node", "register"],
      ["node", "register", "--json"],
      ["devices", "show"],
      ["devices", "show", "a", "b"],
      ["devices", "list", "--no-such-flag"],
      ["devices", "list", "--json", "--no-such-flag"],
      ["nodes", "exec", "x"],
      ["nodes", "exec", "--json", "x"],
      ["nodes", "exec", "x", "--no-such-flag", "--", "ls"],
      ["node", "test-connection", "--timeout"],
      ["migrate"],
      ["gateway", "init", "--san"],
      // A command line that names its group defines only that group: the same answers.
      ["--home", "h", "node", "nosuch"],
      ["--home=h", "devices"],
      ["--json", "--home", "h", "node", "test-connection", "--timeout"],
      ["--home", "h", "--bogus", "node", "status"],
      ["--home", "h", "nod"],
      ["--json", "keys", "create"],
      ["--home", "h", "--", "node", "status"],
      ["--home"],
    ];
    const results = await mapLimited(cases, 3, (args) => run(args));
    const text = cases.map((args, i) => show(args, results[i]!)).join("\n");
    expect(text).toMatchSnapshot();
    // About 70 runs of the CLI: generous, the machines are shared.
  }, 300_000);
});

describe("each command module still runs", () => {
  let gatewayHome: string;
  beforeAll(async () => {
    gatewayHome = tempHome("lazy-gateway");
    const init = await run(["gateway", "init", "--home", gatewayHome, "--listen", "127.0.0.1:9", "--json"]);
    expect(init.code, init.stderr).toBe(0);
  });

  // 127.0.0.1:9 (discard) has no listener: a command that reaches out is refused by name.
  const refused = "https://127.0.0.1:9";
  const fingerprint = "sha256:" + "a".repeat(64);
  it.each<[string, (home: string) => string[], number, Record<string, unknown>]>([
    ["gateway", (h) => ["gateway", "info", "--home", h], 0, { listen: "127.0.0.1:9" }],
    [
      "node",
      (h) => [
        "node",
        "register",
        "--home",
        `${h}-node`,
        "--gateway",
        refused,
        "--ca-fingerprint",
        fingerprint,
      ],
      1,
      { error: "connection_refused" },
    ],
    ["node diagnostics", (h) => ["node", "status", "--home", `${h}-node`], 1, { error: "config_missing" }],
    [
      "devices",
      (h) => ["devices", "list", "--home", h, "--gateway", refused],
      1,
      { error: "connection_refused" },
    ],
    ["keys", (h) => ["rotate", "ca", "--overlap", "x", "--home", h], 2, { error: "invalid_request" }],
    [
      "token",
      (h) => ["auth", "validate", "--home", h, "--gateway", refused],
      1,
      { error: "connection_refused" },
    ],
    ["audit", (h) => ["audit", "tail", "--lines", "x", "--home", h], 2, { error: "invalid_request" }],
    ["config", (h) => ["config", "explain", "--home", h], 0, { configs: [{ kind: "gateway" }] }],
    ["doctor", (h) => ["doctor", "--home", h], 0, { worst: "ok" }],
    ["service", (h) => ["service", "install", "gateway", "--dry-run", "--home", h], 0, { written: false }],
    ["enroll", (h) => ["enroll", "create", "--expires", "99d", "--home", h], 2, { error: "invalid_request" }],
    ["migrate", (h) => ["migrate", "--from-legacy", "--home", h], 1, { error: "config_missing" }],
    [
      "dashboard",
      (h) => ["dashboard", "--no-open", "--home", h, "--gateway", refused],
      1,
      { error: "connection_refused" },
    ],
  ])("%s", async (_module, args, code, expected) => {
    const result = await run([...args(gatewayHome), "--json"]);
    expect(result.code, result.stdout + result.stderr).toBe(code);
    expect(JSON.parse(result.stdout)).toMatchObject(expected);
  });

  it("nodes exec keeps its own status (125) for its failures", async () => {
    const result = await run(["nodes", "exec", "--home", gatewayHome, "--timeout", "5", "n", "--", "ls"]);
    expect(result.code).toBe(125);
    expect(result.stderr).toContain("--timeout 5: give milliseconds from 100 to 300000");
  });
});
