/**
 * Device names as a registration sends them: spaces only, invisible letters (U+3164, U+2800),
 * control and format characters, lone surrogates, invalid UTF-8 bytes, look-alikes of an approved
 * node's name. A refused name is a catalogue error that stores nothing; an accepted one is stored
 * as well-formed text a person can see; and no pending registration, whatever its name, takes an
 * approved node's name away from `nodes exec NAME`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import type WebSocket from "ws";
import { TRICKY_CHARS } from "./arbitraries.js";
import {
  expectCatalogueError,
  openNodeSession,
  registerApprovedNode,
  runs,
  startHostileGateway,
  watchSession,
  type HostileGateway,
  type RegisteredNode,
} from "./harness.js";
import { createCsr, generateKeyPair } from "../../src/pki/index.js";

let gateway: HostileGateway;
let watcher: Awaited<ReturnType<typeof watchSession>>;
let node: RegisteredNode;
let session: WebSocket;
let csrs: string[];

const NODE_NAME = "web-01";

/** Characters that are letters or symbols to Unicode but show as nothing. */
const INVISIBLE =
  /[\u115f\u1160\u3164\uffa0\u2800\u180e\u200b-\u200f\u2060-\u2064\ufeff\u{e0000}-\u{e007f}]|\u034f|\u17b4|\u17b5/u;
const VISIBLE = /[\p{L}\p{N}\p{P}\p{S}]/u;

function readable(name: string): boolean {
  return [...name].some((c) => VISIBLE.test(c) && !INVISIBLE.test(c));
}

beforeAll(async () => {
  gateway = await startHostileGateway();
  watcher = await watchSession(gateway, "names-watcher");
  node = await registerApprovedNode(gateway, NODE_NAME);
  session = (await openNodeSession(gateway, node)).socket;
  // The approved node answers `status` for the name-resolution property.
  session.on("message", (data) => {
    const message = JSON.parse(data.toString()) as { type?: string; id?: string };
    if (message.type === "exec")
      session.send(
        JSON.stringify({
          type: "exec_result",
          id: message.id,
          outcome: "completed",
          exitCode: 0,
          signal: null,
          stdout: Buffer.from("ok\n").toString("base64"),
          stderr: "",
          durationMs: 1,
        }),
      );
  });
  // Fresh keys are cheap but not free: a pool of CSRs, one per case.
  csrs = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => createCsr(await generateKeyPair(), `n${i}`)),
  );
});

afterAll(async () => {
  session?.terminate();
  watcher?.close();
  await gateway?.close();
});

/** A CSR from the pool, made fresh when the pool runs out, so no key registers twice. */
async function freshCsr(): Promise<string> {
  return csrs.pop() ?? createCsr(await generateKeyPair(), "n");
}

/** The raw JSON text of a name, escapes kept as the sender wrote them (lone surrogates stay lone). */
function jsonString(name: string): string {
  let out = '"';
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit < 0x20 || unit === 0x22 || unit === 0x5c || (unit >= 0xd800 && unit <= 0xdfff))
      out += "\\u" + unit.toString(16).padStart(4, "0");
    else out += name[i];
  }
  return out + '"';
}

const hostileName = fc.oneof(
  fc.integer({ min: 1, max: 64 }).map((n) => " ".repeat(n)),
  fc
    .array(fc.constantFrom(...TRICKY_CHARS, "\u3164", "\u2800", "\u115f", "\uffa0", "\u{e0041}"), {
      minLength: 1,
      maxLength: 8,
    })
    .map((parts) => parts.join("")),
  fc
    .tuple(fc.constantFrom("web", "db-1", NODE_NAME), fc.constantFrom(...TRICKY_CHARS), fc.boolean())
    .map(([base, c, before]) => (before ? c + base : base + c)),
  fc.string({ minLength: 1, maxLength: 40, unit: "binary" }),
  fc.string({ minLength: 1, maxLength: 20, unit: "grapheme-composite" }),
  fc.integer({ min: 60, max: 300 }).map((n) => "n".repeat(n)),
);

const invalidUtf8 = fc.constantFrom(
  Buffer.from([0xff]),
  Buffer.from([0xc0, 0x80]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xe2, 0x82]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0x80, 0x80]),
);

describe("hostile device names", () => {
  it("a name is refused with a catalogue error and nothing stored, or stored as text a person can see", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          {
            weight: 4,
            arbitrary: hostileName.map((name) => ({ name, raw: undefined as Buffer | undefined })),
          },
          {
            weight: 1,
            arbitrary: fc
              .tuple(fc.constantFrom("", "web"), invalidUtf8, fc.constantFrom("", "-01"))
              .map(([a, bytes, b]) => ({
                name: `${a}?${b}`,
                raw: Buffer.concat([Buffer.from(a), bytes, Buffer.from(b)]),
              })),
          },
        ),
        async ({ name, raw }) => {
          const csr = await freshCsr();
          const body = raw
            ? Buffer.concat([Buffer.from(`{"csr":${JSON.stringify(csr)},"name":"`), raw, Buffer.from('"}')])
            : `{"csr":${JSON.stringify(csr)},"name":${jsonString(name)}}`;
          const shown = raw ? `bytes ${raw.toString("hex")}` : JSON.stringify(name);
          const before = await gateway.snapshot();
          const reply = await gateway.call({ path: "/api/v1/enroll", body });
          // Bytes that are not UTF-8 are not a name: they are refused, not replaced with U+FFFD.
          if (raw) expect(reply.status, `name ${shown} -> ${reply.text}`).not.toBe(202);
          if (reply.status !== 202) {
            expectCatalogueError(reply, `name ${shown}`);
            expect(await gateway.snapshot(), `stored state after refusing ${shown}`).toBe(before);
            return;
          }
          const { deviceId } = reply.json as { deviceId: string };
          const [row] = gateway.rows(
            `SELECT name, CAST(name AS BLOB) AS bytes FROM devices WHERE device_id = '${deviceId.replace(/'/g, "")}'`,
          ) as { name: string; bytes: Buffer }[];
          expect(row, `device ${deviceId} stored`).toBeDefined();
          const stored = new TextDecoder("utf-8", { fatal: false }).decode(row!.bytes);
          expect(
            () => new TextDecoder("utf-8", { fatal: true }).decode(row!.bytes),
            `${shown} stored as valid UTF-8`,
          ).not.toThrow();
          expect(/\p{Surrogate}/u.test(stored), `${shown} stored with a lone surrogate`).toBe(false);
          expect(
            /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(stored),
            `${shown} stored with control or format characters`,
          ).toBe(false);
          expect(
            readable(stored),
            `${shown} accepted, but a person sees nothing (${JSON.stringify(stored)})`,
          ).toBe(true);
          // Keep the pending count low: the next cases must reach the name check, not the cap.
          await gateway.adminCall({ path: `/api/v1/devices/${deviceId}/deny`, body: "{}" });
        },
      ),
      runs(200),
    );
  });

  it("a pending registration named like an approved node never takes its name from `nodes exec NAME`", async () => {
    const lookalike = fc.oneof(
      fc.constant(NODE_NAME),
      fc.constantFrom(
        "WEB-01",
        "Web-01",
        "ｗｅｂ－０１",
        "web\u201101",
        " web-01",
        "web-01 ",
        "web-01\u200b",
        "\u200bweb-01",
      ),
      fc
        .array(fc.boolean(), { minLength: NODE_NAME.length, maxLength: NODE_NAME.length })
        .map((upper) => [...NODE_NAME].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join("")),
    );
    await fc.assert(
      fc.asyncProperty(lookalike, async (name) => {
        const csr = await freshCsr();
        const enrolled = await gateway.call({ path: "/api/v1/enroll", body: JSON.stringify({ csr, name }) });
        if (enrolled.status !== 202) expectCatalogueError(enrolled, `name ${JSON.stringify(name)}`);
        const reply = await gateway.adminCall({
          path: `/api/v1/nodes/${encodeURIComponent(NODE_NAME)}/exec`,
          body: JSON.stringify({ command: "status" }),
        });
        expect(reply.status, `exec ${NODE_NAME} with a pending ${JSON.stringify(name)}: ${reply.text}`).toBe(
          200,
        );
        expect((reply.json as { deviceId: string }).deviceId).toBe(node.deviceId);
        if (enrolled.status === 202) {
          const { deviceId } = enrolled.json as { deviceId: string };
          await gateway.adminCall({ path: `/api/v1/devices/${deviceId}/deny`, body: "{}" });
        }
      }),
      runs(60),
    );
  });

  it("after the run: a node session opened before it is still up and answering", async () => {
    await watcher.expectStillUp();
  });
});
