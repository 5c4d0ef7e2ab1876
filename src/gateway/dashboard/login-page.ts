import { readdirSync } from "node:fs";
import path from "node:path";
import { DEFAULT_WEB_DIR } from "./static-files.js";

/** Escapes text for an HTML text node or a quoted attribute value (HTML Living Standard §13.1). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Escaped text whose `backticked` spans become <code> elements: the catalogue's hints quote
 * commands that way ("Run `gatehouse dashboard` again…"), and a page shows them as code.
 */
export function textWithCode(text: string): string {
  return text
    .split("`")
    .map((part, index) => (index % 2 === 1 ? `<code>${escapeHtml(part)}</code>` : escapeHtml(part)))
    .join("");
}

let builtStylesheet: string | null | undefined;

/**
 * The dashboard's built stylesheet, `/dashboard/assets/app-<hash>.css`, found once in `webDir`'s
 * assets (the files the gateway serves); undefined when the dashboard was not built.
 */
export function dashboardStylesheet(webDir = DEFAULT_WEB_DIR): string | undefined {
  if (builtStylesheet === undefined) {
    let names: string[] = [];
    try {
      names = readdirSync(path.join(webDir, "assets"));
    } catch {
      // Not built: the page stands without a stylesheet.
    }
    const css = names.find((name) => /^app-[\w-]+\.css$/.test(name));
    builtStylesheet = css ? `/dashboard/assets/${css}` : null;
  }
  return builtStylesheet ?? undefined;
}

/**
 * The page a refused login link shows: a title, the sentence saying why (already used, expired,
 * not known, no token) and the way to a new link, its command as <code>. No script and no inline
 * style, so it stands under the dashboard's CSP as it is; it links the dashboard's own stylesheet
 * (`style-src 'self'`) so it looks like the page. Every interpolated value is escaped.
 */
export function loginRefusedPage(reason: string, hint: string, stylesheet = dashboardStylesheet()): string {
  return [
    "<!doctype html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>Login link refused</title>",
    ...(stylesheet ? [`<link rel="stylesheet" href="${escapeHtml(stylesheet)}">`] : []),
    "</head>",
    "<body>",
    '<main class="splash">',
    "<h1>Login link refused</h1>",
    `<p>${textWithCode(reason)}</p>`,
    `<p class="login-hint">${textWithCode(hint)}</p>`,
    "</main>",
    "</body>",
    "</html>",
    "",
  ].join("\n");
}
