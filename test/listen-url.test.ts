import { describe, expect, it } from "vitest";
import { dialUrlForListen, urlReachesListen } from "../src/config/listen-url.js";

describe("the URL a local client dials for a listen address", () => {
  it("dials loopback for a wildcard, in either family and any spelling", () => {
    expect(dialUrlForListen("0.0.0.0:18789")).toBe("https://127.0.0.1:18789");
    expect(dialUrlForListen(":18789")).toBe("https://127.0.0.1:18789");
    expect(dialUrlForListen("[::]:18789")).toBe("https://[::1]:18789");
    expect(dialUrlForListen("[0:0:0:0:0:0:0:0]:443")).toBe("https://[::1]:443");
  });

  it("dials any other host as written, an IPv6 one in brackets", () => {
    expect(dialUrlForListen("127.0.0.1:9000")).toBe("https://127.0.0.1:9000");
    expect(dialUrlForListen("[::1]:9000")).toBe("https://[::1]:9000");
    expect(dialUrlForListen("[fe80:0:0::1]:9000")).toBe("https://[fe80::1]:9000");
    expect(dialUrlForListen("gateway.lan:18789")).toBe("https://gateway.lan:18789");
    expect(dialUrlForListen("192.168.1.5:18789")).toBe("https://192.168.1.5:18789");
  });

  it("refuses what is not HOST:PORT", () => {
    expect(() => dialUrlForListen("18789")).toThrow(TypeError);
  });
});

describe("whether a stored URL still reaches a listen address", () => {
  it("needs the same port, and the same host when the gateway is bound to one address", () => {
    expect(urlReachesListen("https://127.0.0.1:18789", "127.0.0.1:18789")).toBe(true);
    expect(urlReachesListen("https://127.0.0.1:18789/", "127.0.0.1:19000")).toBe(false);
    expect(urlReachesListen("https://127.0.0.1:18789", "192.168.1.5:18789")).toBe(false);
    expect(urlReachesListen("https://[::1]:18789", "[0::1]:18789")).toBe(true);
  });

  it("takes any host behind a wildcard, but not another port or scheme", () => {
    expect(urlReachesListen("https://gateway.lan:18789", "0.0.0.0:18789")).toBe(true);
    expect(urlReachesListen("https://127.0.0.1:18789", "[::]:18789")).toBe(true);
    expect(urlReachesListen("https://127.0.0.1:18789", "0.0.0.0:18790")).toBe(false);
    expect(urlReachesListen("http://127.0.0.1:18789", "0.0.0.0:18789")).toBe(false);
    expect(urlReachesListen("not a url", "0.0.0.0:18789")).toBe(false);
  });
});
