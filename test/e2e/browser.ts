import { expect } from "vitest";
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from "playwright-core";
import { cleanupAll, runJson, startTestGateway, type TestGateway } from "./harness.js";

/**
 * How long the page may take to show something before a test fails: a margin for a loaded
 * machine, never a measure of speed. Every wait below ends as soon as the page shows it.
 */
export const SHOWN_MS = 30_000;

/** Waits until the one element `locator` names is visible. */
export async function visible(locator: Locator): Promise<void> {
  await locator.waitFor({ state: "visible", timeout: SHOWN_MS });
}

/** Waits until nothing matches `locator` (an element removed, a button never rendered). */
export async function absent(locator: Locator): Promise<void> {
  await expect.poll(() => locator.count(), { timeout: SHOWN_MS }).toBe(0);
}

/** Waits until the element's text contains `text`. */
export async function showsText(locator: Locator, text: string): Promise<void> {
  await expect.poll(() => locator.innerText({ timeout: SHOWN_MS }), { timeout: SHOWN_MS }).toContain(text);
}

/**
 * Waits until `locator` matches at least one element and every one's text passes `test` (a
 * filtered list that shows only what the filter asked for, and not nothing).
 */
export async function everyShown(locator: Locator, test: (text: string) => boolean): Promise<void> {
  await expect
    .poll(
      async () => {
        const texts = await locator.allInnerTexts();
        return texts.length > 0 && texts.every(test);
      },
      { timeout: SHOWN_MS },
    )
    .toBe(true);
}

/** Waits until the document's title is `title`. */
export async function titleIs(page: Page, title: string): Promise<void> {
  await expect.poll(() => page.title(), { timeout: SHOWN_MS }).toBe(title);
}

/**
 * Debian's Chromium (`apt-get install chromium`, see .ci/run), or the Chromium or Chrome that
 * `GATEHOUSE_CHROMIUM` names on another system: playwright-core brings no browser of its own.
 */
export const CHROMIUM = process.env.GATEHOUSE_CHROMIUM || "/usr/bin/chromium";

/** The README's screenshot size. */
export const VIEWPORT = { width: 1280, height: 800 };

/**
 * Starts headless Chromium once for a test file (no sandbox: CI runs as root in a container; no
 * background traffic: the tests' network is loopback only). Close it in afterAll.
 */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
}

/**
 * Starts a test gateway (with `options`, as startTestGateway takes them) and Chromium side by
 * side, for a test file's beforeAll. When either fails to start, the other is stopped before the
 * error is thrown: nothing is left running. Stop both with stopGatewayAndBrowser.
 */
export async function startGatewayAndBrowser(
  options?: Parameters<typeof startTestGateway>[0],
): Promise<{ gateway: TestGateway; browser: Browser }> {
  const [gateway, browser] = await Promise.allSettled([startTestGateway(options), launchBrowser()]);
  if (gateway.status === "fulfilled" && browser.status === "fulfilled")
    return { gateway: gateway.value, browser: browser.value };
  if (browser.status === "fulfilled") await browser.value.close();
  if (gateway.status === "fulfilled") await gateway.value.stop();
  throw gateway.status === "rejected" ? gateway.reason : (browser as PromiseRejectedResult).reason;
}

/**
 * For afterAll: closes the browser, stops the gateway (either may be undefined when beforeAll
 * failed part-way) and removes the test's temporary homes.
 */
export async function stopGatewayAndBrowser(
  gateway: TestGateway | undefined,
  browser: Browser | undefined,
): Promise<void> {
  await browser?.close();
  await gateway?.stop();
  cleanupAll();
}

/**
 * A fresh browser profile (its own cookies). The gateway's certificate comes from its own CA,
 * which this profile does not trust: HTTPS errors are ignored, as a person clicks through them.
 */
export function newContext(browser: Browser): Promise<BrowserContext> {
  return browser.newContext({ ignoreHTTPSErrors: true, viewport: VIEWPORT });
}

/** A login link from the real CLI: `gatehouse dashboard --json` on the gateway's home. */
export async function dashboardLink(
  gateway: TestGateway,
  role?: string,
): Promise<{ url: string; role: string; expiresAt: string }> {
  return runJson(["dashboard", "--home", gateway.home, ...(role ? ["--role", role] : [])]);
}

export interface LoggedIn {
  context: BrowserContext;
  page: Page;
  /** The link that was used (now spent). */
  link: string;
}

/**
 * Logs a new browser profile in by a fresh link, as a person does: opens it and waits until the
 * gateway has redirected to the dashboard and the page shows its Logout button.
 */
export async function loginByLink(browser: Browser, gateway: TestGateway, role?: string): Promise<LoggedIn> {
  const { url: link } = await dashboardLink(gateway, role);
  const context = await newContext(browser);
  const page = await context.newPage();
  await page.goto(link);
  await visible(page.getByRole("button", { name: "Logout" }));
  return { context, page, link };
}

/** Opens one of the dashboard's tabs (Pending, Devices, Refusals, Audit) by clicking it. */
export async function openTab(page: Page, name: "Pending" | "Devices" | "Refusals" | "Audit"): Promise<void> {
  const label = new RegExp(`^\\s*${name}\\b`);
  await page
    .getByRole("tab", { name: label })
    .or(page.getByRole("link", { name: label }))
    .or(page.getByRole("button", { name: label }))
    .first()
    .click();
}

/**
 * What `fetch` answers inside the page (same origin, the session cookie sent by the browser):
 * the status and the JSON body. `csrf: true` adds the session's X-CSRF-Token header as the page
 * itself does, read from GET /api/v1/dashboard/session.
 */
export async function fetchInPage(
  page: Page,
  request: { method: string; path: string; body?: unknown; csrf: boolean },
): Promise<{ status: number; body: Record<string, unknown> }> {
  return page.evaluate(async ({ method, path, body, csrf }) => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (csrf) {
      const session = (await (await fetch("/api/v1/dashboard/session")).json()) as { csrfToken: string };
      headers["x-csrf-token"] = session.csrfToken;
    }
    const response = await fetch(path, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }, request);
}
