import type { IncomingMessage, ServerResponse } from "node:http";

/** The part of an HTTP(S) server this needs: its `request` event. */
interface RequestSource {
  on(event: "request", listener: (request: IncomingMessage, response: ServerResponse) => void): unknown;
}

/**
 * Counts the HTTP requests a server is answering, so that a stopping gateway can wait for the
 * answers in flight (a command cut by the stop is answered `node_offline`) without waiting, as
 * `server.close()` does, for every connection to end: node sessions are upgraded connections,
 * which are never requests here. Costs one `close` listener per request.
 */
export class RequestsInFlight {
  private count = 0;
  private waiting: (() => void)[] = [];
  /** One listener shared by every response: no closure per request. */
  private readonly ended = (): void => {
    this.count--;
    if (this.count > 0) return;
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  };

  constructor(server: RequestSource) {
    server.on("request", (_request, response) => {
      this.count++;
      response.on("close", this.ended);
    });
  }

  /** Requests being answered now. */
  get size(): number {
    return this.count;
  }

  /** Resolves once no request is being answered (at once when none is). */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}
