/* eslint-disable no-control-regex -- these tests look for control characters on purpose */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import path from "node:path";
import Database from "better-sqlite3";
import WebSocket from "ws";
import {
  cleanupAll,
  registeredNode,
  runCli,
  runJson,
  startRegistration,
  startTestGateway,
  type TestGateway,
} from "./harness.js";
import { nodeTls } from "./lifecycle-fixtures.js";

/** What a terminal acts on: C0 except newline and tab, DEL, C1, bidi overrides and isolates. */
const TERMINAL_CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]/;

/** Sets the window title, clears the screen, recolours; a C1 CSI; a right-to-left override. */
const HOSTILE =
  "\x1b]0;pwned\x07\x1b[2J\x1b[31mdevice revoked\x1b[0m \u009b31m \u202eeveR\u202c \u2066x\u2069";

let gateway: TestGateway;
let rogueHome: string;
let rogueId: string;
let rogue: WebSocket;

/**
 * An approved node that lies: it answers every exec request itself, over a real mTLS session with
 * its real device key and certificate, choosing outcome, code and message to harm the operator.
 */
function connectRogue(): Promise<WebSocket> {
  const tls = nodeTls(rogueHome);
  const socket = new WebSocket(gateway.url.replace(/^https:/, "wss:") + "/api/v1/connect", tls);
  socket.on("message", (data) => {
    const message = JSON.parse(String(data)) as { type: string; id?: string; command?: string };
    if (message.type !== "exec") return;
    const base = { type: "exec_result", id: message.id, signal: null, durationMs: 1 };
    const answers: Record<string, object> = {
      refuse: {
        outcome: "refused",
        exitCode: null,
        stdout: "",
        stderr: "",
        code: "device_revoked",
        message: HOSTILE,
      },
      fail: {
        outcome: "failed",
        exitCode: null,
        stdout: "",
        stderr: "",
        code: "insufficient_scope",
        message: HOSTILE,
      },
      ok: {
        outcome: "completed",
        exitCode: 0,
        stdout: Buffer.from("plain \x1b[1mbold\x1b[0m\n").toString("base64"),
        stderr: "",
        code: "device_revoked",
      },
    };
    socket.send(JSON.stringify({ ...base, ...answers[message.command ?? ""] }));
  });
  return new Promise((resolve, reject) => {
    socket.once("message", () => resolve(socket)); // the welcome
    socket.once("error", reject);
    socket.once("unexpected-response", () => reject(new Error("the gateway refused the rogue node")));
  });
}

function exec(command: string, json: boolean) {
  return runCli([
    "nodes",
    "exec",
    rogueId,
    "--home",
    gateway.home,
    ...(json ? ["--json"] : []),
    "--",
    command,
  ]);
}

async function authRefusals(): Promise<{ type: string; code: string | null; subject: string | null }[]> {
  const { entries } = await runJson<{
    entries: { type: string; code: string | null; subject: string | null }[];
  }>(["audit", "tail", "-n", "1000", "--home", gateway.home]);
  return entries.filter((e) => e.type === "auth.refused");
}

beforeAll(async () => {
  gateway = await startTestGateway();
  ({ home: rogueHome, deviceId: rogueId } = await registeredNode(gateway, "rogue"));
  rogue = await connectRogue();
});

afterAll(async () => {
  rogue?.close();
  await gateway.stop();
  cleanupAll();
});

describe("a rogue node cannot choose the operator's error or write to the operator's terminal", () => {
  it("a refusal claiming device_revoked reaches the operator as command_not_allowed, escapes filtered", async () => {
    const human = await exec("refuse", false);
    // 125: gatehouse's own failure, never a status the remote command could have given.
    expect(human.code).toBe(125);
    expect(human.stderr).toMatch(/^✗ command_not_allowed: the node refused the command/);
    expect(human.stderr).not.toContain("device_revoked:");
    expect(human.stdout + human.stderr).not.toMatch(TERMINAL_CONTROLS);
    // The node's words are still there, as visible data.
    expect(human.stderr).toContain("device revoked");

    const json = await exec("refuse", true);
    expect(json.code).toBe(125);
    expect(json.stdout).not.toMatch(TERMINAL_CONTROLS);
    const body = JSON.parse(json.stdout) as { error: string; error_description: string };
    expect(body.error).toBe("command_not_allowed");
    expect(body.error_description).toContain("device revoked");
  });

  it("a failure claiming insufficient_scope is the gateway's invalid_request, escapes filtered", async () => {
    const human = await exec("fail", false);
    expect(human.code).toBe(125);
    expect(human.stderr).toMatch(/^✗ invalid_request: /);
    expect(human.stdout + human.stderr).not.toMatch(TERMINAL_CONTROLS);
  });

  it("a completed command keeps no code the node chose; its own output passes through raw, as with ssh", async () => {
    const json = await exec("ok", true);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).not.toHaveProperty("code");
    const human = await exec("ok", false);
    expect(human.code).toBe(0);
    expect(human.stdout).toBe("plain \x1b[1mbold\x1b[0m\n");
  });

  it("none of this is audited as the operator being refused", async () => {
    expect(await authRefusals()).toEqual([]);
    const history = await runJson<{ history: { command: string; code: string | null }[] }>([
      "nodes",
      "history",
      rogueId,
      "--home",
      gateway.home,
    ]);
    expect(history.history.map((h) => [h.command, h.code])).toEqual(
      expect.arrayContaining([
        ["refuse", "command_not_allowed"],
        ["fail", "invalid_request"],
        ["ok", null],
      ]),
    );
  });
});

describe("names, platforms and reasons from nodes and registrations are filtered wherever the CLI prints them", () => {
  it("devices list/show and nodes list show escapes, never act on them; --json keeps the exact value", async () => {
    // A record written before today's name rules (or by anyone with the database): the CLI must
    // not trust the gateway's stored text either.
    rogue.close();
    await gateway.stop();
    const db = new Database(path.join(gateway.home, "gatehouse.db"));
    db.prepare("UPDATE devices SET name = ?, platform = ?, status_reason = ? WHERE device_id = ?").run(
      `rogue${HOSTILE}`,
      `linux${HOSTILE}`,
      HOSTILE,
      rogueId,
    );
    db.close();
    await gateway.restart();
    rogue = await connectRogue();

    for (const args of [
      ["devices", "list"],
      ["devices", "show", rogueId],
      ["nodes", "list"],
    ]) {
      const printed = await runCli([...args, "--home", gateway.home]);
      expect(printed.code, printed.stderr).toBe(0);
      expect(printed.stdout + printed.stderr, args.join(" ")).not.toMatch(TERMINAL_CONTROLS);
      expect(printed.stdout, args.join(" ")).toContain("rogue\\x1b]0;pwned\\x07");
    }
    const shown = await runCli(["devices", "show", rogueId, "--home", gateway.home]);
    expect(shown.stdout).toContain("linux\\x1b]0;pwned");

    const json = await runCli(["devices", "list", "--home", gateway.home, "--json"]);
    expect(json.stdout).not.toMatch(TERMINAL_CONTROLS);
    const { devices } = JSON.parse(json.stdout) as { devices: { deviceId: string; name: string }[] };
    expect(devices.find((d) => d.deviceId === rogueId)?.name).toBe(`rogue${HOSTILE}`);
  });

  it("a deny reason full of escapes is refused, and the admin's terminal shows none of it", async () => {
    const { register, device } = await startRegistration(gateway, "denied-one");
    const refused = await runCli([
      "devices",
      "deny",
      device.deviceId,
      "--reason",
      HOSTILE,
      "--home",
      gateway.home,
    ]);
    // A reason is text other people read (devices show, the node's register): printable only.
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("invalid_request");
    expect(refused.stdout + refused.stderr).not.toMatch(TERMINAL_CONTROLS);

    const denied = await runCli([
      "devices",
      "deny",
      device.deviceId,
      "--reason",
      "not one of ours",
      "--home",
      gateway.home,
    ]);
    expect(denied.code).toBe(0);
    expect(await register.exited).toBe(1);
    expect(register.stderr).toContain("device_denied");
    expect(register.stdout + register.stderr).not.toMatch(TERMINAL_CONTROLS);

    const shown = await runCli(["devices", "show", device.deviceId, "--home", gateway.home]);
    expect(shown.stdout).toContain("denied (not one of ours");
  });
});
