import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import type { Browser, Page } from "playwright-core";
import { createCsr, generateKeyPair, spkiIdentity } from "../../src/pki/index.js";
import { requestJson } from "../../src/client/https-json.js";
import {
  listDevices,
  nodeRegisterArgs,
  registeredNode,
  runJson,
  spawnCli,
  tempHome,
  type Running,
  type TestGateway,
} from "./harness.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import {
  absent,
  fetchInPage,
  loginByLink,
  newContext,
  openTab,
  showsText,
  SHOWN_MS,
  titleIs,
  VIEWPORT,
  visible,
  startGatewayAndBrowser,
  stopGatewayAndBrowser,
} from "./browser.js";

/** A device name `node register` would refuse (names cannot hold `<`): only the store can have it. */
const MARKUP_NAME = "<img src=x onerror=window.__xss=1>";
const MARKUP_PLATFORM = "<img src=x onerror=window.__xss=2>";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Puts a device whose name is markup into the gateway's database, as an older version or a
 * restored backup might hold it: the dashboard must show it as text whatever the store contains.
 */
async function insertMarkupDevice(home: string): Promise<void> {
  const keys = await generateKeyPair();
  const identity = spkiIdentity(await crypto.subtle.exportKey("spki", keys.publicKey));
  const db = new Database(path.join(home, "gatehouse.db"));
  try {
    const at = new Date().toISOString();
    db.prepare(
      `INSERT INTO devices (device_id, kind, name, platform, status, role, public_key, key_fingerprint,
         user_code, address, created_at, updated_at, approved_at, revoked_at, status_reason, last_seen,
         cert_fingerprint, cert_expires_at)
       VALUES (?, 'node', ?, 'linux-x64', 'approved', 'node', ?, ?, NULL, '127.0.0.1', ?, ?, ?, NULL, NULL, NULL, NULL, NULL)`,
    ).run(
      identity.deviceId,
      MARKUP_NAME,
      Buffer.from(identity.spki).toString("base64"),
      identity.keyFingerprint,
      at,
      at,
      at,
    );
  } finally {
    db.close();
  }
}

/** The registrations a test started: the next test starts with none waiting (see afterEach). */
const registering: Running[] = [];

/** `gatehouse node register` from a new node home, waiting for approval (the real CLI). */
function register(gateway: TestGateway, name: string): Running {
  const running = spawnCli(nodeRegisterArgs(gateway, tempHome("node"), { name }));
  registering.push(running);
  return running;
}

/** The pending card of the device called `name`. */
function pendingCard(page: Page, name: string) {
  return page.getByTestId("pending-card").filter({ hasText: name });
}

/** The number of devices waiting, as the gateway lists them (for the title's count). */
async function pendingCount(gateway: TestGateway): Promise<number> {
  return (await listDevices(gateway, true)).length;
}

/** Denies from the CLI every request still waiting, and waits for their `node register` to end. */
async function denyAllPending(gateway: TestGateway): Promise<void> {
  for (const device of await listDevices(gateway, true))
    await runJson(["devices", "deny", device.deviceId, "--home", gateway.home]);
  for (const running of registering.splice(0)) await running.exited;
}

describe("the dashboard in Chromium", () => {
  let gateway: TestGateway;
  let browser: Browser;

  beforeAll(async () => {
    ({ gateway, browser } = await startGatewayAndBrowser());
    // The markup device goes in while the gateway is stopped: it reads the store as it starts.
    await gateway.stop();
    await insertMarkupDevice(gateway.home);
    await gateway.restart();
  });

  // Each test counts the requests it made (the title's count): none is left over from another.
  afterEach(async () => {
    await denyAllPending(gateway);
  });

  afterAll(() => stopGatewayAndBrowser(gateway, browser));

  it("logs in by the link: the address bar keeps no token and the session cookie is HttpOnly", async () => {
    const { context, page } = await loginByLink(browser, gateway);
    await page.waitForURL(`${gateway.url}/dashboard/**`, { timeout: SHOWN_MS });
    expect(new URL(page.url()).pathname).toBe("/dashboard/");
    expect(page.url()).not.toContain("token");
    const cookies = await context.cookies(gateway.url);
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({
      name: "__Host-gatehouse-session",
      httpOnly: true,
      secure: true,
      sameSite: "Strict",
      path: "/",
    });
    // Scripts in the page cannot read it.
    expect(await page.evaluate(() => document.cookie)).toBe("");
    await showsText(page.getByTestId("role-badge"), "admin");
    await context.close();
  });

  it("refuses the link used a second time with a readable page that says why and what to do", async () => {
    const { context, link } = await loginByLink(browser, gateway);
    await context.close();
    const second = await newContext(browser);
    const page = await second.newPage();
    const response = await page.goto(link);
    expect(response?.status()).toBe(401);
    expect(await page.title()).toContain("Login link refused");
    await visible(page.getByText("This login link was already used."));
    await visible(page.getByText(/again for a new link/));
    expect(await page.getByText(/again for a new link/).innerText()).toContain("gatehouse dashboard");
    expect(await second.cookies(gateway.url)).toHaveLength(0);
    await second.close();
  });

  it("shows a registering node's request live, without a reload, with its user code and the count in the title", async () => {
    const { context, page } = await loginByLink(browser, gateway);
    await openTab(page, "Pending");
    await visible(page.getByText("No device is waiting for approval."));
    await titleIs(page, "Gatehouse");
    // A reload would make a new document: this marker in the old one proves there was none.
    await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));

    const node = register(gateway, "live-laptop");
    await node.waitFor(() => /User code:\s+\S/.test(node.stdout), "the user code on the node", 30_000);
    const code = /User code:\s+([A-Z]{4}-[A-Z]{4})/.exec(node.stdout)![1]!;
    const card = pendingCard(page, "live-laptop");
    await visible(card);
    expect((await card.getByTestId("user-code").innerText()).trim()).toBe(code);
    await titleIs(page, "(1) Gatehouse");
    expect(
      await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument),
    ).toBe(true);

    await denyAllPending(gateway);
    await absent(card);
    await titleIs(page, "Gatehouse");
    await context.close();
  });

  it("approves a request by clicking Approve, and the waiting node register finishes with exit 0", async () => {
    const { context, page } = await loginByLink(browser, gateway);
    await openTab(page, "Pending");
    const node = register(gateway, "approve-me");
    const card = pendingCard(page, "approve-me");
    await visible(card);
    await card.getByLabel("Role").selectOption("node");
    await card.getByRole("button", { name: "Approve" }).click();
    expect(await node.exited).toBe(0);
    expect(node.stdout).toContain("Approved");
    await absent(card);
    const device = (await listDevices(gateway)).find((d) => d.name === "approve-me");
    expect(device?.status).toBe("approved");
    await context.close();
  });

  it("denies a request with a reason, and the waiting node register exits 1 naming that reason", async () => {
    const { context, page } = await loginByLink(browser, gateway);
    await openTab(page, "Pending");
    const node = register(gateway, "deny-me");
    const card = pendingCard(page, "deny-me");
    await visible(card);
    await card.getByLabel("Reason").fill("not a device of this house");
    await card.getByRole("button", { name: "Deny" }).click();
    expect(await node.exited).toBe(1);
    expect(node.stdout + node.stderr).toContain("not a device of this house");
    await absent(card);
    await context.close();
  });

  it("revokes a connected node by clicking, and its session closes with 4403 device_revoked", async () => {
    const { home, deviceId } = await registeredNode(gateway, "revoke-me");
    const agent = await startAgentAllowing(home, []);
    try {
      const { context, page } = await loginByLink(browser, gateway);
      await openTab(page, "Devices");
      const row = page.locator(`[data-testid="device-row"][data-device-id="${deviceId}"]`);
      await showsText(row, "online");
      await row.getByRole("button", { name: "Revoke", exact: true }).click();
      await row.getByLabel("Revoke reason").fill("lost on a train");
      await row.getByRole("button", { name: "Confirm revoke" }).click();
      await agent.waitFor(
        () => agent.stderr.includes("4403 device_revoked"),
        "the agent's session to close",
        30_000,
      );
      expect(await agent.exited).toBe(1);
      await showsText(row, "revoked");
      await context.close();
    } finally {
      await stopAgent(agent);
    }
  });

  it("refuses a POST without the session's CSRF token (403 csrf_failed) and changes nothing; the same POST with it works", async () => {
    const { context, page } = await loginByLink(browser, gateway);
    const node = register(gateway, "csrf-target");
    await openTab(page, "Pending");
    const card = pendingCard(page, "csrf-target");
    await visible(card);
    const deviceId = (await card.getAttribute("data-device-id"))!;

    const refused = await fetchInPage(page, {
      method: "POST",
      path: `/api/v1/devices/${deviceId}/deny`,
      body: { reason: "forged" },
      csrf: false,
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe("csrf_failed");
    expect(refused.body.hint).toContain("X-CSRF-Token");
    expect((await listDevices(gateway)).find((d) => d.deviceId === deviceId)?.status).toBe("pending");

    // The header is the only difference: with it the same request is the page's own.
    const accepted = await fetchInPage(page, {
      method: "POST",
      path: `/api/v1/devices/${deviceId}/deny`,
      body: { reason: "with the token" },
      csrf: true,
    });
    expect(accepted.status).toBe(200);
    expect(await node.exited).toBe(1);
    await context.close();
  });

  it("gives a viewer session no Approve, Deny or Revoke buttons, and refuses its API calls with insufficient_scope", async () => {
    const { context, page } = await loginByLink(browser, gateway, "viewer");
    await showsText(page.getByTestId("role-badge"), "viewer");
    register(gateway, "viewer-sees");
    await openTab(page, "Pending");
    const card = pendingCard(page, "viewer-sees");
    await visible(card);
    await absent(card.getByRole("button", { name: "Approve" }));
    await absent(card.getByRole("button", { name: "Deny" }));
    const deviceId = (await card.getAttribute("data-device-id"))!;

    await openTab(page, "Devices");
    await visible(page.getByTestId("device-row").filter({ hasText: "approve-me" }));
    await absent(page.getByRole("button", { name: "Revoke" }));

    const refused = await fetchInPage(page, {
      method: "POST",
      path: `/api/v1/devices/${deviceId}/approve`,
      body: { role: "node" },
      csrf: true,
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe("insufficient_scope");
    expect((await listDevices(gateway, true)).some((d) => d.deviceId === deviceId)).toBe(true);

    await openTab(page, "Audit");
    await visible(page.getByText("Your role cannot read the audit log."));
    await context.close();
  });

  it("shows a device name and a platform that hold markup as text: no element made, no script run", async () => {
    // A registration straight to the API: platform is free text (printable), so it may hold markup.
    const keys = await generateKeyPair();
    const ca = readFileSync(path.join(gateway.home, "admin", "ca.pem"), "utf8");
    const enrolled = await requestJson<{ deviceId: string }>(`${gateway.url}/api/v1/enroll`, {
      method: "POST",
      body: { csr: await createCsr(keys, "markup"), name: "markup-platform", platform: MARKUP_PLATFORM },
      tls: { ca },
    });
    expect(enrolled.status).toBe(202);

    const { context, page } = await loginByLink(browser, gateway);
    await openTab(page, "Pending");
    const card = pendingCard(page, "markup-platform");
    await visible(card.getByText(MARKUP_PLATFORM, { exact: true }));

    await openTab(page, "Devices");
    await visible(page.getByTestId("device-row").getByText(MARKUP_NAME, { exact: true }));

    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(await page.locator("img[onerror]").count()).toBe(0);
    await context.close();
  });

  it("shows the Pending page with two requests (the README's screenshot)", async () => {
    const { context, page } = await loginByLink(browser, gateway);
    await openTab(page, "Pending");
    register(gateway, "kitchen-pi");
    register(gateway, "alice-laptop");
    await visible(pendingCard(page, "kitchen-pi"));
    await visible(pendingCard(page, "alice-laptop"));
    expect(await pendingCount(gateway)).toBe(2);
    await titleIs(page, "(2) Gatehouse");
    // The live indicator settles before the picture is taken, so the picture is the same each run.
    await visible(page.getByText("Live", { exact: true }));

    const update = process.env.GATEHOUSE_UPDATE_SCREENSHOTS === "1";
    const dir = update ? path.join(REPO, "docs") : mkdtempSync(path.join(os.tmpdir(), "gh-screenshot-"));
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "dashboard-pending.png");
    const png = await page.screenshot({ path: file });
    // A PNG of the README's size: width and height are the IHDR's first two big-endian words.
    expect(png.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([VIEWPORT.width, VIEWPORT.height]);

    await context.close();
  });
});
