import { afterAll, beforeAll, describe, expect, it } from "vitest";
import path from "node:path";
import type { Browser, Page, Request } from "playwright-core";
import { GATEWAY_FILES } from "../../src/config/index.js";
import { openSqliteStore } from "../../src/store/index.js";
import type { TestGateway } from "./harness.js";
import {
  dashboardLink,
  loginByLink,
  openTab,
  SHOWN_MS,
  startGatewayAndBrowser,
  stopGatewayAndBrowser,
  visible,
} from "./browser.js";

/** The dashboard's Audit page asks for the newest page only, and older ones with "Load older". */

const FILLERS = 450;

let gateway: TestGateway;
let browser: Browser;

beforeAll(async () => {
  ({ gateway, browser } = await startGatewayAndBrowser());
  // More entries than one page of the page (200): fillers numbered in their details.
  const store = await openSqliteStore(path.join(gateway.home, GATEWAY_FILES.database));
  try {
    await store.appendAudit(
      Array.from({ length: FILLERS }, (_, n) => ({
        event: {
          ts: new Date().toISOString(),
          type: "filler.entry",
          outcome: "success" as const,
          actor: "admin",
          subject: "filler",
          address: null,
          code: null,
          details: { n },
        },
      })),
    );
  } finally {
    await store.close();
  }
}, 120_000);

afterAll(() => stopGatewayAndBrowser(gateway, browser));

/** The filler numbers the rows show, top to bottom (other entries left out). */
async function fillerNumbers(page: Page): Promise<number[]> {
  const texts = await page.getByTestId("audit-row").filter({ hasText: "filler.entry" }).allInnerTexts();
  return texts.map((text) => Number(/n:\s*(\d+)/.exec(text)?.[1]));
}

const range = (from: number, downTo: number) => Array.from({ length: from - downTo + 1 }, (_, i) => from - i);

describe("the Audit page", () => {
  it("shows the newest 200 entries from one newest-first request, then older ones on Load older, without gaps after a live change", async () => {
    const { context, page } = await loginByLink(browser, gateway);
    const asked: URL[] = [];
    page.on("request", (request: Request) => {
      const url = new URL(request.url());
      if (url.pathname === "/api/v1/audit") asked.push(url);
    });
    await openTab(page, "Audit");
    const rows = page.getByTestId("audit-row");
    await expect.poll(() => rows.count(), { timeout: SHOWN_MS }).toBe(200);
    // Newest first: the login itself on top, then the newest fillers.
    await expect.poll(() => rows.first().innerText(), { timeout: SHOWN_MS }).toContain("dashboard.login");
    const firstPage = await fillerNumbers(page);
    expect(firstPage[0]).toBe(FILLERS - 1);
    expect(firstPage).toEqual(range(FILLERS - 1, FILLERS - firstPage.length));
    // Only newest-first pages of 200 were asked for (a reconnect may ask the newest page again).
    expect(asked.length).toBeGreaterThan(0);
    for (const url of asked) {
      expect(url.searchParams.get("order")).toBe("desc");
      expect(url.searchParams.get("limit")).toBe("200");
      expect(url.searchParams.has("afterId")).toBe(false);
      expect(url.searchParams.has("beforeId")).toBe(false);
    }

    await page.getByRole("button", { name: "Load older" }).click();
    await expect.poll(() => rows.count(), { timeout: SHOWN_MS }).toBe(400);
    const lowest = FILLERS - (await fillerNumbers(page)).length;
    expect(await fillerNumbers(page)).toEqual(range(FILLERS - 1, lowest));
    expect(asked.some((url) => /^\d+$/.test(url.searchParams.get("beforeId") ?? ""))).toBe(true);

    // A new entry (another login link) arrives live: the refreshed list joins the older pages.
    await dashboardLink(gateway);
    await expect.poll(() => rows.count(), { timeout: SHOWN_MS }).toBe(401);
    await expect
      .poll(() => rows.first().innerText(), { timeout: SHOWN_MS })
      .toContain("dashboard.link_created");
    expect(await fillerNumbers(page)).toEqual(range(FILLERS - 1, lowest));
    expect(
      asked.every((url) => url.searchParams.get("order") === "desc" && !url.searchParams.has("afterId")),
    ).toBe(true);

    // Loading on to the first entry: the button goes away at the end of the log.
    for (let i = 0; i < 5 && (await page.getByRole("button", { name: "Load older" }).count()) > 0; i++) {
      const before = await rows.count();
      await page.getByRole("button", { name: "Load older" }).click();
      await expect.poll(() => rows.count(), { timeout: SHOWN_MS }).toBeGreaterThan(before);
    }
    expect(await page.getByRole("button", { name: "Load older" }).count()).toBe(0);
    expect(await fillerNumbers(page)).toEqual(range(FILLERS - 1, 0));
    await visible(rows.last());
    await context.close();
  });
});
