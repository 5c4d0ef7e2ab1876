import type { DashboardSession } from "./types.js";

/**
 * An error answer from the gateway, in the catalogue's shape
 * (`{"error","error_description","hint"}`), or a network failure (code `unavailable`).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly description: string,
    readonly hint: string,
  ) {
    super(`${code}: ${description}`);
  }

  /** The session cookie is unknown, expired or ended: the page must ask for a new login link. */
  get loggedOut(): boolean {
    return this.status === 401;
  }
}

/** Turns any error answer into an ApiError, keeping the catalogue's text when the body has it. */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  const fields = (body && typeof body === "object" ? body : {}) as Record<string, unknown>;
  const text = (key: string) => (typeof fields[key] === "string" ? (fields[key] as string) : "");
  return new ApiError(
    response.status,
    text("error") || "unavailable",
    text("error_description") || `The gateway answered ${response.status} ${response.statusText}.`.trim(),
    text("hint"),
  );
}

let session: Promise<DashboardSession> | undefined;

/**
 * GET /api/v1/dashboard/session, asked once per page load: its csrfToken goes on every POST.
 * @throws ApiError (401 when there is no live dashboard session)
 */
export function loadSession(): Promise<DashboardSession> {
  session ??= request<DashboardSession>("GET", "/api/v1/dashboard/session").catch((error: unknown) => {
    session = undefined;
    throw error;
  });
  return session;
}

/** Forgets the session (after logout, or when the gateway said it ended). */
export function forgetSession(): void {
  session = undefined;
}

/** GET a JSON route of the gateway's API. @throws ApiError */
export function getJson<T>(path: string): Promise<T> {
  return request<T>("GET", path);
}

/**
 * POST a JSON body with the session's CSRF token (X-CSRF-Token), as every state-changing call
 * from a dashboard session must. @throws ApiError
 */
export async function postJson<T>(path: string, body: unknown = {}): Promise<T> {
  const { csrfToken } = await loadSession();
  return request<T>("POST", path, body, csrfToken);
}

async function request<T>(method: string, path: string, body?: unknown, csrfToken?: string): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError(0, "unavailable", "The gateway did not answer.", "Check that the gateway is running.");
  }
  if (!response.ok) throw await errorFromResponse(response);
  return (await response.json()) as T;
}
