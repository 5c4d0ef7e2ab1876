/** Escapes text for an HTML text node or a quoted attribute value (HTML Living Standard §13.1). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The page a refused login link shows: a title, the sentence saying why (already used, expired,
 * not known) and the way to a new link. No script and no style, so it stands under the dashboard's
 * CSP as it is; every interpolated value is escaped.
 */
export function loginRefusedPage(reason: string, hint: string): string {
  return [
    "<!doctype html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>Login link refused</title>",
    "</head>",
    "<body>",
    "<h1>Login link refused</h1>",
    `<p>${escapeHtml(reason)}</p>`,
    `<p>${escapeHtml(hint)}</p>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}
