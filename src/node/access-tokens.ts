import { requestJson } from "../client/https-json.js";

export interface AccessToken {
  token: string;
  /** Milliseconds since the epoch, by this machine's clock. */
  expiresAt: number;
  lifetimeMs: number;
}

/**
 * A node without a client certificate: exchanges its API key for short-lived access tokens
 * (`client_credentials`), over TLS verified against the pinned CA. The key never leaves memory
 * except in that request body.
 */
export class AccessTokenSource {
  constructor(
    private readonly gatewayUrl: string,
    private readonly apiKey: string,
    private readonly caPem: () => string,
  ) {}

  /**
   * A fresh access token (`client_credentials`, RFC 6749 §4.4).
   * @param gatewayUrl the instance to ask (default: the one this source was made for); a node with
   *   several gateway URLs asks the one its session goes to.
   */
  async fetch(gatewayUrl = this.gatewayUrl): Promise<AccessToken> {
    const started = Date.now();
    const { body } = await requestJson<{ access_token: string; expires_in: number }>(
      `${gatewayUrl}/api/v1/auth/token`,
      { tls: { ca: this.caPem() }, body: { grant_type: "client_credentials", client_secret: this.apiKey } },
    );
    const lifetimeMs = body.expires_in * 1000;
    return { token: body.access_token, expiresAt: started + lifetimeMs, lifetimeMs };
  }
}
