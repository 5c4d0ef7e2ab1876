/**
 * The error catalogue: the one table that maps a stable code to its HTTP status, WebSocket close
 * code, default description and hint. Gateway replies, WebSocket closes and CLI messages all render
 * from here, so a user who sees a code anywhere can look it up in one place (README, "Error codes").
 */
export const ERROR_CATALOGUE = {
  missing_credentials: {
    status: 401,
    close: 4401,
    description: "No credential was presented.",
    hint: "Present a client certificate (node) or an admin credential; run `gatehouse node register` first if this node has none.",
  },
  invalid_token: {
    status: 401,
    close: 4401,
    description: "The token is malformed or its signature does not verify.",
    hint: "Get a fresh token with `gatehouse token`.",
  },
  token_expired: {
    status: 401,
    close: 4401,
    description: "The token has expired.",
    hint: "Refresh it, or get a new one with `gatehouse token`.",
  },
  token_not_yet_valid: {
    status: 401,
    close: 4401,
    description: "The token is not valid yet.",
    hint: "Check the clocks of this machine and the gateway.",
  },
  wrong_audience: {
    status: 401,
    close: 4401,
    description: "The token was minted for another gateway.",
    hint: "Get a token from this gateway; check which gateway URL the client uses.",
  },
  unknown_key: {
    status: 401,
    close: 4401,
    description: "The token is signed by a key this gateway does not know.",
    hint: "Get a fresh token from this gateway.",
  },
  cert_untrusted: {
    status: 401,
    close: 4401,
    description: "The client certificate was not issued by this gateway's CA.",
    hint: "This node is registered with another gateway, or its certificate is foreign: run `gatehouse node register` against this gateway.",
  },
  cert_expired: {
    status: 401,
    close: 4401,
    description: "The client certificate has expired.",
    hint: "Run `gatehouse node register` again, or let the node re-issue it; check the node's clock.",
  },
  device_pending: {
    status: 403,
    close: 4403,
    description: "The device is waiting for an admin's approval.",
    hint: "Ask an admin to run `gatehouse devices approve <user code>`.",
  },
  device_denied: {
    status: 403,
    close: 4403,
    description: "An admin denied this device's registration.",
    hint: "Ask the gateway's admin why; register again (`gatehouse node register --new-key`) only if they agree.",
  },
  device_revoked: {
    status: 403,
    close: 4403,
    description: "This device has been revoked.",
    hint: "Ask the gateway's admin; a revoked device must register again with a new key (`gatehouse node register --new-key`).",
  },
  insufficient_scope: {
    status: 403,
    close: 4403,
    description: "The credential lacks a scope this action needs.",
    hint: "Use a credential whose role grants the scope named in the description.",
  },
  csrf_failed: {
    status: 403,
    close: 4403,
    description: "The request did not carry this dashboard session's CSRF token.",
    hint: "Reload the dashboard page; scripts must send the X-CSRF-Token header from GET /api/v1/dashboard/session.",
  },
  refresh_token_reused: {
    status: 401,
    close: 4401,
    description: "This refresh token was already used; its whole family is revoked.",
    hint: "Get a new token with the API key (`gatehouse token`); check for a leaked refresh token.",
  },
  invalid_request: {
    status: 400,
    close: 4400,
    description: "The request is malformed.",
    hint: "Fix the request as the description says.",
  },
  not_found: {
    status: 404,
    close: 4404,
    description: "No such resource.",
    hint: "Check the id; `gatehouse devices list` shows the known devices.",
  },
  payload_too_large: {
    status: 413,
    close: 1009,
    description: "The request body is too large.",
    hint: "Send a smaller body; a CSR is a few hundred bytes.",
  },
  headers_too_large: {
    status: 431,
    close: 0,
    description: "The request headers are too large.",
    hint: "Send smaller headers (at most 16 KiB in all): an access token is at most 8 KiB.",
  },
  rate_limited: {
    status: 429,
    close: 4429,
    description: "Too many requests.",
    hint: "Wait and retry; the Retry-After header says how long.",
  },
  unavailable: {
    status: 503,
    close: 1013,
    description: "The gateway cannot serve this now.",
    hint: "Retry shortly; check the gateway's log.",
  },
  internal_error: {
    status: 500,
    close: 1011,
    description: "The gateway failed unexpectedly.",
    hint: "Check the gateway's log for this request.",
  },
  node_not_found: {
    status: 404,
    close: 4404,
    description: "No such node.",
    hint: "`gatehouse nodes list` shows the online nodes.",
  },
  node_offline: {
    status: 409,
    close: 4409,
    description: "The node is not connected.",
    hint: "Start the node (`gatehouse node start`) and check `gatehouse node test-connection` there.",
  },
  command_not_allowed: {
    status: 403,
    close: 4403,
    description: "The node does not allow this command.",
    hint: "The node's owner must add the command to `exec.allow` in node.json.",
  },
  exec_timeout: {
    status: 504,
    close: 4408,
    description: "The command did not finish in time.",
    hint: "Raise the timeout or run a shorter command.",
  },
  registration_expired: {
    status: 410,
    close: 4410,
    description: "The registration request expired before an admin approved it.",
    hint: "Run `gatehouse node register` again and ask the admin to approve it within the time shown.",
  },
  heartbeat_timeout: {
    status: 408,
    close: 4408,
    description: "No heartbeat arrived in time.",
    hint: "Check the network between node and gateway.",
  },
  // Codes that only the node's own diagnostics report: failures below HTTP.
  config_missing: {
    status: 0,
    close: 0,
    description: "The config file is missing.",
    hint: "Run `gatehouse node register` (node) or `gatehouse gateway init` (gateway), or pass --home.",
  },
  config_invalid: {
    status: 0,
    close: 0,
    description: "The config file is invalid.",
    hint: "Fix the key named in the description.",
  },
  dns_failed: {
    status: 0,
    close: 0,
    description: "The gateway's host name does not resolve.",
    hint: "Check the gateway URL in node.json and this machine's DNS.",
  },
  connection_refused: {
    status: 0,
    close: 0,
    description: "Nothing listens on the gateway's port.",
    hint: "Start the gateway (`gatehouse gateway start`) or fix the port in the gateway URL.",
  },
  connection_timeout: {
    status: 0,
    close: 0,
    description: "The gateway's port does not answer.",
    hint: "A firewall drops the traffic, or the host is down.",
  },
  not_a_gateway: {
    status: 0,
    close: 0,
    description: "Something answers on that port, but it is not a Gatehouse gateway.",
    hint: "Another service holds the port (a forgotten container?): stop it or fix the gateway URL.",
  },
  ca_mismatch: {
    status: 0,
    close: 0,
    description: "The server's certificate does not chain to the pinned CA.",
    hint: "Another gateway, another TLS service or a TLS-terminating proxy answers there (`gatehouse node test-connection` says which); check the URL and the CA fingerprint from `gatehouse gateway init` or `gatehouse gateway info`.",
  },
  san_mismatch: {
    status: 0,
    close: 0,
    description: "The gateway's server certificate does not cover the name or address used to reach it.",
    hint: "Add the name on the gateway (`gatehouse gateway add-name HOST`, then restart it), or use a name the certificate covers.",
  },
  clock_skew: {
    status: 0,
    close: 0,
    description: "This machine's clock differs too much from the gateway's.",
    hint: "Enable time synchronisation (NTP) on this machine: `timedatectl set-ntp true` (systemd), or start chronyd/ntpd; check the gateway's clock the same way. Then retry.",
  },
  connection_failed: {
    status: 0,
    close: 0,
    description: "The connection to the gateway failed.",
    hint: "Run `gatehouse node test-connection` to find the failing layer.",
  },
  // Codes only `gateway start` reports: failures on this machine, before anything is served.
  address_in_use: {
    status: 0,
    close: 0,
    description: "The address the gateway should listen on is already in use.",
    hint: "Stop what holds it (`ss -ltnp` shows the process), or choose another address with --listen or `listen` in gateway.json.",
  },
  // A code only `node start` reports: the home already has its agent.
  already_running: {
    status: 0,
    close: 0,
    description: "A node agent, or a gateway, already runs on this home.",
    hint: "Stop it first, or run this one with another --home.",
  },
} as const satisfies Record<string, { status: number; close: number; description: string; hint: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface ErrorBody {
  error: ErrorCode;
  error_description: string;
  hint: string;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERROR_CATALOGUE, value);
}

/** Errors are values with codes; the edge (HTTP reply, WebSocket close, CLI exit) renders them. */
export class GatehouseError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly status: number;
  /** Seconds a client should wait before retrying (rate limits). */
  retryAfterSeconds?: number;

  constructor(code: ErrorCode, description?: string, hint?: string) {
    const entry = ERROR_CATALOGUE[code];
    super(description ?? entry.description);
    this.name = "GatehouseError";
    this.code = code;
    this.hint = hint ?? entry.hint;
    this.status = entry.status;
  }

  toBody(): ErrorBody {
    return { error: this.code, error_description: this.message, hint: this.hint };
  }

  static fromBody(body: unknown, fallback: ErrorCode = "internal_error"): GatehouseError {
    if (body && typeof body === "object" && "error" in body) {
      const { error, error_description, hint } = body as Record<string, unknown>;
      if (isErrorCode(error)) {
        return new GatehouseError(
          error,
          typeof error_description === "string" ? error_description : undefined,
          typeof hint === "string" ? hint : undefined,
        );
      }
    }
    return new GatehouseError(fallback);
  }
}

/**
 * Whether an error is the gateway's verdict on the caller's own credential (401, or 403 for the
 * caller's device or scopes), the refusals that are logged and audited as `auth.refused`.
 * `command_not_allowed` is a 403 too, but it reports a node's allow-list, not the caller: an
 * operator must never be recorded as refused because of what a node answered.
 */
export function refusesCaller(code: ErrorCode): boolean {
  const status = ERROR_CATALOGUE[code].status;
  return (status === 401 || status === 403) && code !== "command_not_allowed";
}

/** The WebSocket close code for an error, e.g. 4403 for a revoked device. */
export function closeCodeFor(code: ErrorCode): number {
  return ERROR_CATALOGUE[code].close || 1011;
}
