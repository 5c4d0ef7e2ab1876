import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page, Route } from "playwright-core";
import { listDevices, runJson, startRegistration, type TestGateway } from "./harness.js";
import {
  absent,
  dashboardLink,
  everyShown,
  loginByLink,
  newContext,
  openTab,
  showsText,
  SHOWN_MS,
  visible,
  startGatewayAndBrowser,
  stopGatewayAndBrowser,
} from "./browser.js";

/** What a new user of the dashboard noticed: the live stream, the audit filters, layout, feedback. */

let gateway: TestGateway;
let browser: Browser;

beforeAll(async () => {
  ({ gateway, browser } = await startGatewayAndBrowser());
}, 120_000);

afterAll(() => stopGatewayAndBrowser(gateway, browser));

/** A catalogue refusal as the gateway answers it to a role without devices:read. */
const NO_DEVICES_READ = {
  error: "insufficient_scope",
  error_description: "This credential's role node does not grant it",
  hint: "Use a credential whose role has devices:read.",
};

/** The x positions of the tabs, left to right. */
async function tabLefts(page: Page): Promise<number[]> {
  return page
    .locator("nav.tabs a")
    .evaluateAll((links) => links.map((link) => Math.round(link.getBoundingClientRect().left)));
}

/** The width and height of an element, rounded to whole pixels. */
async function size(page: Page, selector: string): Promise<{ width: number; height: number }> {
  return page
    .locator(selector)
    .first()
    .evaluate((element) => {
      const box = element.getBoundingClientRect();
      return { width: Math.round(box.width), height: Math.round(box.height) };
    });
}

describe("the dashboard, as a new user finds it", () => {
  it("stops asking for an event stream its role is refused, says so once, and shows the refusal as two sentences", async () => {
    // A session whose role lacks devices:read (the gateway no longer issues such links: the page
    // is shown the session and the refusals such a role gets).
    const { url } = await dashboardLink(gateway, "viewer");
    const context: BrowserContext = await newContext(browser);
    let streams = 0;
    await context.route("**/api/v1/events", (route: Route) => {
      streams += 1;
      return route.fulfill({ status: 403, json: NO_DEVICES_READ });
    });
    await context.route("**/api/v1/devices", (route: Route) =>
      route.fulfill({ status: 403, json: NO_DEVICES_READ }),
    );
    await context.route("**/api/v1/dashboard/session", async (route: Route) => {
      const response = await route.fetch();
      const body = (await response.json()) as { scopes: string[] };
      return route.fulfill({
        response,
        json: { ...body, role: "node", scopes: body.scopes.filter((scope) => scope !== "devices:read") },
      });
    });
    const page = await context.newPage();
    await page.goto(url);
    await visible(page.getByText("Live updates are off: this session's role cannot read devices."));
    const seen = streams;
    expect(seen).toBe(1);
    // A few turns of the page's event loop, and a request of its own: no stream asked again.
    for (let turn = 0; turn < 5; turn++)
      await page.evaluate(() => new Promise((done) => setTimeout(done, 50)));
    expect(
      await page.evaluate(() => fetch("/api/v1/dashboard/session").then((answer) => answer.status)),
    ).toBe(200);
    expect(streams).toBe(seen);
    await showsText(page.getByTestId("live-state"), "Live off");

    const alert = page.getByRole("alert").first();
    await visible(alert);
    const text = await alert.innerText();
    expect(text).toContain("does not grant it.");
    expect(text).not.toMatch(/grant it\s*Use/);
    expect(text).toMatch(/grant it\.\s+Use a credential/);
    await context.close();
  });

  it("approves and denies with a status line, warns before granting admin, and the tabs keep their place", async () => {
    const first = await startRegistration(gateway, "polish-desktop-workstation");
    const second = await startRegistration(gateway, "polish-other");
    const { context, page } = await loginByLink(browser, gateway);
    await expect.poll(() => page.getByTestId("pending-card").count(), { timeout: SHOWN_MS }).toBe(2);
    const tabsWithCount = await tabLefts(page);

    const card = page.getByTestId("pending-card").filter({ hasText: "polish-desktop-workstation" });
    await card.getByLabel("Role").selectOption("admin");
    await showsText(card, "admin can approve devices and make keys.");
    await card.getByLabel("Role").selectOption("node");
    await absent(card.getByText("admin can approve devices and make keys."));
    await card.getByRole("button", { name: "Approve" }).click();
    await showsText(page.getByRole("status"), "Approved polish-desktop-workstation as node.");
    expect(await first.register.exited).toBe(0);

    const other = page.getByTestId("pending-card").filter({ hasText: "polish-other" });
    await other.getByRole("button", { name: "Deny" }).click();
    await showsText(page.getByRole("status"), "Denied polish-other.");
    expect(await second.register.exited).toBe(1);
    await visible(page.getByText("No device is waiting for approval."));
    // The Pending count went; the tabs after it did not move.
    expect(await tabLefts(page)).toEqual(tabsWithCount);

    await openTab(page, "Devices");
    const row = page.getByTestId("device-row").filter({ hasText: "polish-desktop-workstation" });
    await visible(row);
    await showsText(row.locator('td[data-label="Name"]'), "node device");
    const rowSelector = `[data-testid="device-row"][data-device-id="${first.device.deviceId}"]`;
    const nameBefore = await size(page, `${rowSelector} td[data-label="Name"] .cell-main`);
    const tableBefore = await size(page, "table");
    await row.getByRole("button", { name: "Revoke" }).click();
    await visible(row.getByLabel("Revoke reason"));
    // Opening the form reflows nothing: the name keeps its width and its one line.
    expect(await size(page, `${rowSelector} td[data-label="Name"] .cell-main`)).toEqual(nameBefore);
    expect(await size(page, "table")).toEqual(tableBefore);
    await row.getByRole("button", { name: "Confirm revoke" }).click();
    await showsText(page.getByRole("status"), "Revoked polish-desktop-workstation.");
    await showsText(row.locator('td[data-label="Status"]'), "revoked");
    // A revoked device's certificate no longer counts: no "expires in 24 h".
    await expect
      .poll(() => row.locator('td[data-label="Certificate expires"]').innerText(), { timeout: SHOWN_MS })
      .toBe("—");
    await context.close();
  });

  it("filters the audit log by a device's name or shown id, by a kind without a dot, keeps them in the URL, and names an ambiguous name", async () => {
    const [twinA, twinB] = [
      await startRegistration(gateway, "polish-twin"),
      await startRegistration(gateway, "polish-twin"),
    ];
    const device = (await listDevices(gateway)).find((d) => d.name === "polish-desktop-workstation")!;
    const { context, page } = await loginByLink(browser, gateway);
    await openTab(page, "Audit");
    const rows = page.getByTestId("audit-row");
    await expect.poll(() => rows.count(), { timeout: SHOWN_MS }).toBeGreaterThan(0);
    const actorPlaceholder = (await page.getByLabel("Actor").getAttribute("placeholder")) ?? "";
    // Real examples: a device's name, its stored actor form, a dashboard session's.
    expect(actorPlaceholder).toMatch(/device:[0-9a-z]{8}/);
    expect(actorPlaceholder).toContain("dashboard:");

    /** Every row shown names the device, and there is at least one. */
    const allRowsName = (text: string) => everyShown(rows, (row) => row.includes(text));

    await page.getByLabel("Device").fill("polish-desktop-workstation");
    await page.getByRole("button", { name: "Filter" }).click();
    await allRowsName("polish-desktop-workstation");
    expect(decodeURIComponent(new URL(page.url()).hash)).toBe("#/audit?device=polish-desktop-workstation");
    await page.reload();
    await expect
      .poll(() => page.getByLabel("Device").inputValue(), { timeout: SHOWN_MS })
      .toBe("polish-desktop-workstation");
    await allRowsName("polish-desktop-workstation");

    await page.getByLabel("Device").fill(device.deviceId.slice(0, 8));
    await page.getByRole("button", { name: "Filter" }).click();
    await allRowsName("polish-desktop-workstation");

    await page.getByLabel("Device").fill("");
    await page.getByLabel("Kind").fill("device");
    await page.getByRole("button", { name: "Filter" }).click();
    await everyShown(
      page.locator('[data-testid="audit-row"] td[data-label="Kind"]'),
      (kind) => kind === "device" || kind.startsWith("device."),
    );

    await page.getByLabel("Kind").fill("");
    await page.getByLabel("Device").fill("polish-twin");
    await page.getByRole("button", { name: "Filter" }).click();
    await showsText(page.getByTestId("filter-ambiguous"), "ambiguous");
    await absent(rows);

    // The admin device by its name: its entries are stored with the actor device:<id>.
    await page.getByLabel("Device").fill("");
    await page.getByLabel("Actor").fill("admin");
    await page.getByRole("button", { name: "Filter" }).click();
    await everyShown(page.locator('[data-testid="audit-row"] td[data-label="Actor"]'), (actor) =>
      actor.includes("admin"),
    );

    // startRegistration finds a device by its name: deny both twins by their ids.
    for (const twin of (await listDevices(gateway, true)).filter((d) => d.name === "polish-twin"))
      await runJson(["devices", "deny", twin.deviceId, "--home", gateway.home]);
    await Promise.all([twinA.register.exited, twinB.register.exited]);
    await context.close();
  });

  it("at 390 px keeps every tab and the Live indicator in view, and never splits a token such as dashboard:<hex>", async () => {
    const { url } = await dashboardLink(gateway);
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 390, height: 844 },
    });
    const page = await context.newPage();
    await page.goto(url);
    await visible(page.getByRole("button", { name: "Logout" }));
    await visible(page.getByTestId("live-state"));
    const nav = await page
      .locator("nav.tabs")
      .evaluate((element) => ({ scroll: element.scrollWidth, client: element.clientWidth }));
    expect(nav.scroll).toBeLessThanOrEqual(nav.client);
    for (const right of await page
      .locator("nav.tabs a")
      .evaluateAll((links) => links.map((link) => link.getBoundingClientRect().right)))
      expect(right).toBeLessThanOrEqual(390);

    await openTab(page, "Audit");
    await expect.poll(() => page.getByTestId("audit-row").count(), { timeout: SHOWN_MS }).toBeGreaterThan(0);
    // The earlier test's approval from the page is recorded with the dashboard session as actor.
    const tokens = await page.locator('[data-testid="audit-row"] code.token').evaluateAll((codes) =>
      codes.map((code) => {
        const range = document.createRange();
        range.selectNodeContents(code.lastChild!);
        const lines = new Set(Array.from(range.getClientRects()).map((rect) => Math.round(rect.top)));
        return { text: code.textContent ?? "", lines: lines.size };
      }),
    );
    expect(tokens.some((token) => token.text.startsWith("dashboard:"))).toBe(true);
    for (const token of tokens) expect(token, token.text).toMatchObject({ lines: 1 });
    await context.close();
  });

  it("shows a refused link in the page's own style, its command as code, and says a link without a token has none", async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const response = await page.goto(`${gateway.url}/dashboard/login`);
    expect(response?.status()).toBe(401);
    await visible(page.getByText("This login link has no token."));
    await showsText(page.locator("code"), "gatehouse dashboard");
    expect(await page.locator("body").innerText()).not.toContain("`");
    expect(await page.evaluate(() => getComputedStyle(document.body).fontFamily)).toContain("system-ui");
    await context.close();
  });
});
