import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { GATEWAY_FILES, NODE_FILES, gatewayConfigSchema, readJsonFile } from "../config/index.js";
import { dialUrlForListen } from "../config/listen-url.js";
import { GatehouseError } from "../protocol/errors.js";
import { requestJson, type TlsClientOptions } from "../client/https-json.js";
import { readFlagFile } from "./flag-files.js";
import { nameFailure, type CredentialSource, type UrlSource } from "../client/credential-source.js";

export interface TargetOptions {
  gateway?: string;
  caFile?: string;
  /** A bearer access token to use instead of the home's client certificate. */
  token?: string;
}

interface HomeCredential {
  gatewayUrl: string;
  urlSource: UrlSource;
  ca: string;
  /** The home's client certificate, and where it lies (named when the gateway refuses it). */
  certificate?: { key: string; cert: string; source: CredentialSource & { file: string } };
}

/**
 * Where the CLI finds a gateway and a credential in a home: the admin credential that
 * `gateway init` wrote into `admin/` (a gateway home, or a copy of its admin folder), else a
 * node's own certificate (a node home). On a gateway home the address is `listen` in its
 * gateway.json, the one source of truth (the URL `init` stored in admin/gateway.json goes stale
 * when listen is edited); only a copy of admin/ away from its gateway uses that stored URL.
 * @throws GatehouseError `config_invalid` when gateway.json or admin/gateway.json is unreadable.
 */
function credentialFromHome(home: string): HomeCredential | undefined {
  const at = (name: string) => path.join(home, name);
  const read = (name: string) => readFileSync(at(name), "utf8");
  if (existsSync(at(GATEWAY_FILES.adminGateway))) {
    const meta = readJsonFile(at(GATEWAY_FILES.adminGateway), "config_invalid") as { gatewayUrl: string };
    let gatewayUrl = meta.gatewayUrl;
    let urlSource: UrlSource = { kind: "admin-copy", file: at(GATEWAY_FILES.adminGateway) };
    if (existsSync(at(GATEWAY_FILES.config))) {
      const listen = gatewayListen(at(GATEWAY_FILES.config));
      gatewayUrl = dialUrlForListen(listen);
      urlSource = { kind: "listen", file: at(GATEWAY_FILES.config), listen };
    }
    return {
      gatewayUrl,
      urlSource,
      ca: read(GATEWAY_FILES.adminCa),
      certificate: {
        key: read(GATEWAY_FILES.adminKey),
        cert: read(GATEWAY_FILES.adminCert),
        source: { kind: "admin-certificate", file: at(GATEWAY_FILES.adminCert) },
      },
    };
  }
  if (existsSync(at(NODE_FILES.config)) && existsSync(at(NODE_FILES.caCert))) {
    const meta = readJsonFile(at(NODE_FILES.config), "config_invalid") as { gatewayUrl: string };
    const hasCert = existsSync(at(NODE_FILES.deviceCert)) && existsSync(at(NODE_FILES.deviceKey));
    return {
      gatewayUrl: meta.gatewayUrl,
      urlSource: { kind: "node-config", file: at(NODE_FILES.config) },
      ca: read(NODE_FILES.caCert),
      ...(hasCert
        ? {
            certificate: {
              key: read(NODE_FILES.deviceKey),
              cert: read(NODE_FILES.deviceCert),
              source: { kind: "device-certificate", file: at(NODE_FILES.deviceCert) },
            },
          }
        : {}),
    };
  }
  return undefined;
}

/**
 * The `listen` of a gateway home's gateway.json, read with the config schema's own rule for it
 * (default 127.0.0.1:18789). Only this key is read: an admin command must keep working while
 * another setting is being fixed (the gateway names those at start, `doctor` at any time).
 * @throws GatehouseError `config_invalid` when the file is not JSON or listen is not HOST:PORT.
 */
function gatewayListen(file: string): string {
  const parsed = gatewayConfigSchema.shape.listen.safeParse(readJsonFile(file, "config_invalid").listen);
  if (!parsed.success)
    throw new GatehouseError(
      "config_invalid",
      `listen in ${file}: ${parsed.error.issues[0]?.message ?? "invalid"}`,
      `Fix listen in ${file}: HOST:PORT, e.g. 127.0.0.1:18789.`,
    );
  return parsed.data;
}

/**
 * The credential an admin command presents, by precedence: the `--token` flag, the
 * `GATEHOUSE_TOKEN` variable, then the home's certificate. An empty `--token ""` means "no token"
 * (the variable is not read either). The source goes with it, so a refusal can name it.
 */
function chooseCredential(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  certificate: HomeCredential["certificate"],
): { token?: string; source: CredentialSource } {
  const fallback = certificate
    ? `this home's ${certificate.source.kind === "admin-certificate" ? "admin" : "device"} certificate (${certificate.source.file})`
    : undefined;
  const variable = env.GATEHOUSE_TOKEN || undefined;
  if (flag) {
    const next = variable ? "the GATEHOUSE_TOKEN variable" : fallback;
    return { token: flag, source: { kind: "token-flag", ...(next ? { next } : {}) } };
  }
  if (flag === undefined && variable)
    return { token: variable, source: { kind: "token-variable", ...(fallback ? { next: fallback } : {}) } };
  return { source: certificate?.source ?? { kind: "none" } };
}

/**
 * The CLI's way to the gateway's API: HTTPS verified against the gateway's CA, authenticated with
 * a bearer token when one is given (--token, else GATEHOUSE_TOKEN), else with the home's client
 * certificate (the admin credential, or a node's certificate). Its failures name their origin:
 * which credential was refused and how to stop using it, where an unreachable URL came from.
 */
export class AdminClient {
  private constructor(
    readonly gatewayUrl: string,
    private readonly tls: TlsClientOptions,
    private readonly headers: Record<string, string>,
    /** Where the credential came from: every refusal names it (credential-source.ts). */
    readonly credentialSource: CredentialSource,
    /** Where the URL came from: a gateway that does not answer there names it. */
    readonly urlSource: UrlSource,
  ) {}

  static fromHome(
    home: string,
    options: TargetOptions | string = {},
    env: NodeJS.ProcessEnv = process.env,
  ): AdminClient {
    const target = typeof options === "string" ? { gateway: options } : options;
    const fromHome = credentialFromHome(home);
    const ca = target.caFile ? readFlagFile("--ca-file", target.caFile) : fromHome?.ca;
    const gatewayUrl = target.gateway ?? fromHome?.gatewayUrl;
    const urlSource: UrlSource | undefined = target.gateway ? { kind: "flag" } : fromHome?.urlSource;
    if (!ca || !gatewayUrl || !urlSource) {
      throw new GatehouseError(
        "config_missing",
        `no gateway credential in ${home}: neither ${GATEWAY_FILES.adminGateway} nor ${NODE_FILES.config} is there`,
        "Run this with the gateway's home (--home DIR or GATEHOUSE_HOME), a copy of its admin/ folder, a node home, or --gateway URL --ca-file FILE.",
      );
    }
    const url = gatewayUrl.replace(/\/+$/, "");
    const { token, source } = chooseCredential(target.token, env, fromHome?.certificate);
    let client: AdminClient;
    if (token) client = new AdminClient(url, { ca }, { authorization: `Bearer ${token}` }, source, urlSource);
    else {
      const tls: TlsClientOptions = { ca };
      if (fromHome?.certificate) {
        tls.key = fromHome.certificate.key;
        tls.cert = fromHome.certificate.cert;
      }
      client = new AdminClient(url, tls, {}, source, urlSource);
    }
    client.caFile = target.caFile;
    return client;
  }

  /** The file --ca-file named, if the CA came from one: a chain it does not vouch for names it. */
  private caFile: string | undefined;

  /**
   * The same gateway and CA, with no client credential (for exchanging an API key or a refresh
   * token): `presenting` names the credential the request body carries instead.
   */
  anonymous(presenting: CredentialSource = { kind: "none" }): AdminClient {
    return new AdminClient(this.gatewayUrl, { ca: this.tls.ca }, {}, presenting, this.urlSource);
  }

  async get<T>(route: string): Promise<T> {
    return this.send<T>(route, {});
  }

  async post<T>(route: string, body: unknown = {}, timeoutMs?: number): Promise<T> {
    return this.send<T>(route, { method: "POST", body, ...(timeoutMs ? { timeoutMs } : {}) });
  }

  /** One request; a failure comes back with its credential's or its URL's origin named. */
  private async send<T>(
    route: string,
    options: { method?: string; body?: unknown; timeoutMs?: number },
  ): Promise<T> {
    try {
      const response = await requestJson<T>(this.gatewayUrl + route, {
        ...options,
        tls: this.tls,
        headers: this.headers,
      });
      return response.body;
    } catch (error) {
      throw this.nameCaFile(nameFailure(error, this.credentialSource, this.urlSource));
    }
  }

  /**
   * A chain that does not lead to the CAs in --ca-file says so: during a CA rotation the server
   * certificate still chains to the previous CA, so a file with only the new one (pki/ca.pem)
   * refuses the right gateway; the bundle of every CA it trusts (admin/ca.pem) does not.
   */
  private nameCaFile(error: unknown): unknown {
    if (!this.caFile || !(error instanceof GatehouseError) || error.code !== "ca_mismatch") return error;
    const count = (this.tls.ca?.toString().match(/-----BEGIN CERTIFICATE-----/g) ?? []).length;
    return new GatehouseError(
      "ca_mismatch",
      `${error.message}; the CA came from --ca-file ${this.caFile} (${count} certificate${count === 1 ? "" : "s"})`,
      `If the gateway is in a CA rotation, its server certificate still chains to the previous CA: give --ca-file the bundle of every CA it trusts (admin/ca.pem in the gateway's home, or a node's ca.pem), not pki/ca.pem. Otherwise: ${error.hint}`,
    );
  }
}
