import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import type { Browser } from "playwright-core";
import { listDevices, registeredNode, runCli, runJson, spawnCli, type TestGateway } from "./harness.js";
import {
  dashboardLink,
  loginByLink,
  newContext,
  openTab,
  showsText,
  visible,
  startGatewayAndBrowser,
  stopGatewayAndBrowser,
} from "./browser.js";
import { readReply } from "../hostile/harness.js";
import type { RefusalList } from "../../web/src/types.js";

/**
 * The dashboard's Refusals page answers "why can't my node connect?": each refusal says what its
 * reply said, names the device by its name, and tells the certificate's fingerprint from the key's.
 */

const NODE_NAME = "kitchen-laptop";
const REVOKED_HINT = "a revoked device must register again with a new key";

let gateway: TestGateway;
let browser: Browser;
let node: { home: string; deviceId: string };
let keyFingerprint: string;

/** GET on a fresh connection, presenting the home's admin certificate when `asAdmin`. */
function get(url: string, asAdmin: boolean): Promise<{ status: number; body: Record<string, unknown> }> {
  const read = (file: string) => readFileSync(path.join(gateway.home, file), "utf8");
  const tls = asAdmin ? { cert: read("admin/admin.pem"), key: read("admin/admin.key") } : {};
  return new Promise((resolve, reject) => {
    https
      .get(gateway.url + url, { agent: false, ca: read("admin/ca.pem"), ...tls }, (response) => {
        readReply(response).then(
          ({ status, text }) => resolve({ status, body: JSON.parse(text) as Record<string, unknown> }),
          reject,
        );
      })
      .on("error", reject);
  });
}

/** The list as the dashboard reads it: the answer has the shape the page is written for. */
async function refusals(): Promise<RefusalList> {
  const answer = await get("/api/v1/refusals?limit=200", true);
  expect(answer.status).toBe(200);
  return answer.body as unknown as RefusalList;
}

beforeAll(async () => {
  ({ gateway, browser } = await startGatewayAndBrowser());
  node = await registeredNode(gateway, NODE_NAME);
  const device = (await listDevices(gateway)).find((d) => d.deviceId === node.deviceId) as unknown as {
    fingerprint: string;
  };
  keyFingerprint = "sha256:" + device.fingerprint.replace(/^sha256:/, "").slice(0, 12);
  expect((await runCli(["devices", "revoke", node.deviceId, "--home", gateway.home])).code).toBe(0);
  // The revoked node tries to connect, as it would after a reboot: the gateway refuses it.
  const agent = spawnCli(["node", "start", "--home", node.home]);
  expect(await agent.exited).not.toBe(0);
}, 120_000);

afterAll(() => stopGatewayAndBrowser(gateway, browser));

describe("GET /api/v1/refusals", () => {
  it("names a revoked node's device by name, with its key fingerprint next to the certificate's", async () => {
    const { since, refusals: list } = await refusals();
    expect(Number.isNaN(Date.parse(since))).toBe(false);
    const refused = list.find((r) => r.code === "device_revoked");
    expect(refused, JSON.stringify(list)).toMatchObject({
      credential: "client-certificate",
      deviceId: node.deviceId,
      deviceName: NODE_NAME,
      deviceKeyFingerprint: keyFingerprint,
    });
    expect(refused!.description).toContain("revoked");
    expect(refused!.hint).toContain(REVOKED_HINT);
    // The fingerprint shown is the certificate's: not the key's that `node register` printed.
    expect(refused!.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(refused!.fingerprint).not.toBe(keyFingerprint);
  });

  it("missing_credentials on /api/v1/dashboard/session says to run `gatehouse dashboard`, as its reply did", async () => {
    const reply = await get("/api/v1/dashboard/session", false);
    expect(reply.status).toBe(401);
    const refused = (await refusals()).refusals.find((r) => r.route === "/api/v1/dashboard/session");
    expect(refused).toMatchObject({
      code: "missing_credentials",
      description: reply.body.error_description,
      hint: reply.body.hint,
    });
    expect(refused!.hint).toContain("gatehouse dashboard");
    expect(refused!.hint).not.toContain("node register");
  });

  it("keeps `devices show`'s recent failures for the device", async () => {
    const shown = await runJson<{ device: { recentFailures: { code: string }[] } }>([
      "devices",
      "show",
      node.deviceId,
      "--home",
      gateway.home,
    ]);
    expect(shown.device.recentFailures.map((f) => f.code)).toContain("device_revoked");
  });
});

describe("the Refusals page", () => {
  it("shows the revoked node by name and a reused login link with what the refused page said", async () => {
    // A login link used twice: the second visit is refused with its own sentence and hint.
    const { url: link } = await dashboardLink(gateway);
    const first = await newContext(browser);
    await (await first.newPage()).goto(link);
    await first.close();
    const second = await newContext(browser);
    await (await second.newPage()).goto(link);
    await second.close();

    const { context, page } = await loginByLink(browser, gateway);
    try {
      await openTab(page, "Refusals");
      const revoked = page.getByTestId("refusal-row").filter({ hasText: "device_revoked" }).first();
      await visible(revoked);
      const device = revoked.getByTestId("refusal-device");
      await showsText(device, NODE_NAME);
      await showsText(device, keyFingerprint);
      expect(await device.locator(`[title="${node.deviceId}"]`).count()).toBe(1);
      await showsText(revoked, "certificate sha256:");
      await showsText(revoked.getByTestId("refusal-description"), "revoked");
      await showsText(revoked.getByTestId("refusal-hint"), REVOKED_HINT);

      const reused = page
        .getByTestId("refusal-row")
        .filter({ hasText: "This login link was already used." })
        .first();
      await visible(reused);
      // The hint's command is shown as code, without the backticks the reply writes around it.
      const hint = reused.getByTestId("refusal-hint");
      await showsText(hint, "Run gatehouse dashboard again for a new link.");
      await visible(hint.locator("code", { hasText: "gatehouse dashboard" }));
      expect(await hint.innerText()).not.toContain("`");
      expect(await reused.innerText()).not.toContain("gatehouse token");
      await showsText(reused.getByTestId("refusal-device"), "—");

      await showsText(page.getByTestId("refusals-since"), "Refusals since the gateway started at");
      await showsText(page.getByTestId("refusals-since"), "older ones are in the audit log.");
    } finally {
      await context.close();
    }
  }, 120_000);
});
