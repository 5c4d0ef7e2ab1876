import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { GATEWAY_FILES, NODE_FILES, readJsonFile } from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { requestJson, type TlsClientOptions } from "../client/https-json.js";
import { readFlagFile } from "./flag-files.js";

export interface TargetOptions {
  gateway?: string;
  caFile?: string;
  /** A bearer access token to use instead of the home's client certificate. */
  token?: string;
}

interface HomeCredential {
  gatewayUrl: string;
  ca: string;
  key?: string;
  cert?: string;
}

/**
 * Where the CLI finds a gateway and a credential in a home: the admin credential that
 * `gateway init` wrote into `admin/` (a gateway home, or a copy of its admin folder), else a
 * node's own certificate (a node home).
 */
function credentialFromHome(home: string): HomeCredential | undefined {
  const at = (name: string) => path.join(home, name);
  const read = (name: string) => readFileSync(at(name), "utf8");
  if (existsSync(at(GATEWAY_FILES.adminGateway))) {
    const meta = readJsonFile(at(GATEWAY_FILES.adminGateway), "config_invalid") as { gatewayUrl: string };
    return {
      gatewayUrl: meta.gatewayUrl,
      ca: read(GATEWAY_FILES.adminCa),
      key: read(GATEWAY_FILES.adminKey),
      cert: read(GATEWAY_FILES.adminCert),
    };
  }
  if (existsSync(at(NODE_FILES.config)) && existsSync(at(NODE_FILES.caCert))) {
    const meta = readJsonFile(at(NODE_FILES.config), "config_invalid") as { gatewayUrl: string };
    const hasCert = existsSync(at(NODE_FILES.deviceCert)) && existsSync(at(NODE_FILES.deviceKey));
    return {
      gatewayUrl: meta.gatewayUrl,
      ca: read(NODE_FILES.caCert),
      ...(hasCert ? { key: read(NODE_FILES.deviceKey), cert: read(NODE_FILES.deviceCert) } : {}),
    };
  }
  return undefined;
}

/**
 * The CLI's way to the gateway's API: HTTPS verified against the gateway's CA, authenticated with
 * a bearer token when one is given (--token or GATEHOUSE_TOKEN), else with the home's client
 * certificate (the admin credential, or a node's certificate).
 */
export class AdminClient {
  private constructor(
    readonly gatewayUrl: string,
    private readonly tls: TlsClientOptions,
    private readonly headers: Record<string, string>,
  ) {}

  static fromHome(home: string, options: TargetOptions | string = {}): AdminClient {
    const target = typeof options === "string" ? { gateway: options } : options;
    const token = target.token ?? process.env.GATEHOUSE_TOKEN;
    const fromHome = credentialFromHome(home);
    const ca = target.caFile ? readFlagFile("--ca-file", target.caFile) : fromHome?.ca;
    const gatewayUrl = target.gateway ?? fromHome?.gatewayUrl;
    if (!ca || !gatewayUrl) {
      throw new GatehouseError(
        "config_missing",
        `no gateway credential in ${home}: neither ${GATEWAY_FILES.adminGateway} nor ${NODE_FILES.config} is there`,
        "Run this with the gateway's home (--home DIR or GATEHOUSE_HOME), a copy of its admin/ folder, a node home, or --gateway URL --ca-file FILE.",
      );
    }
    if (token)
      return new AdminClient(gatewayUrl.replace(/\/+$/, ""), { ca }, { authorization: `Bearer ${token}` });
    const tls: TlsClientOptions = { ca };
    if (fromHome?.key && fromHome.cert) {
      tls.key = fromHome.key;
      tls.cert = fromHome.cert;
    }
    return new AdminClient(gatewayUrl.replace(/\/+$/, ""), tls, {});
  }

  /** The same gateway and CA, with no client credential (for exchanging an API key). */
  anonymous(): AdminClient {
    return new AdminClient(this.gatewayUrl, { ca: this.tls.ca }, {});
  }

  async get<T>(route: string): Promise<T> {
    return (await requestJson<T>(this.gatewayUrl + route, { tls: this.tls, headers: this.headers })).body;
  }

  async post<T>(route: string, body: unknown = {}, timeoutMs?: number): Promise<T> {
    const options = {
      method: "POST",
      body,
      tls: this.tls,
      headers: this.headers,
      ...(timeoutMs ? { timeoutMs } : {}),
    };
    return (await requestJson<T>(this.gatewayUrl + route, options)).body;
  }
}
