import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { GATEWAY_FILES } from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { requestJson } from "../client/https-json.js";

/**
 * The admin's way to the gateway: HTTPS with the admin client certificate that `gateway init`
 * wrote into `admin/`. Copy that folder into another home to administer from another machine.
 */
export class AdminClient {
  private constructor(
    readonly gatewayUrl: string,
    private readonly tls: { ca: string; key: string; cert: string },
  ) {}

  static fromHome(home: string, gatewayOverride?: string): AdminClient {
    const file = (name: string) => path.join(home, name);
    const missing = [
      GATEWAY_FILES.adminGateway,
      GATEWAY_FILES.adminKey,
      GATEWAY_FILES.adminCert,
      GATEWAY_FILES.adminCa,
    ]
      .map(file)
      .find((f) => !existsSync(f));
    if (missing) {
      throw new GatehouseError(
        "config_missing",
        `no admin credential: ${missing} does not exist`,
        "Run admin commands with the gateway's home (--home DIR or GATEHOUSE_HOME), or a copy of its admin/ folder.",
      );
    }
    const meta = JSON.parse(readFileSync(file(GATEWAY_FILES.adminGateway), "utf8")) as { gatewayUrl: string };
    return new AdminClient((gatewayOverride ?? meta.gatewayUrl).replace(/\/+$/, ""), {
      ca: readFileSync(file(GATEWAY_FILES.adminCa), "utf8"),
      key: readFileSync(file(GATEWAY_FILES.adminKey), "utf8"),
      cert: readFileSync(file(GATEWAY_FILES.adminCert), "utf8"),
    });
  }

  async get<T>(route: string): Promise<T> {
    return (await requestJson<T>(this.gatewayUrl + route, { tls: this.tls })).body;
  }

  async post<T>(route: string, body: unknown = {}): Promise<T> {
    return (await requestJson<T>(this.gatewayUrl + route, { method: "POST", body, tls: this.tls })).body;
  }
}
