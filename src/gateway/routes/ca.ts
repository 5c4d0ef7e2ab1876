import type { FastifyInstance } from "fastify";
import type { GatewayContext } from "../context.js";
import type { CaRotationState } from "../tls-state.js";
import { signCaSuccession } from "../../pki/index.js";
import type { CaBundleResponse } from "../../protocol/messages.js";

/**
 * GET /api/v1/ca, open to anyone (CA certificates are public): the CA bundle a node trusts and
 * the rotation statement that vouches for it. A registering node checks it against the CA it
 * pinned before it sends anything, so a node pinning either CA of a rotation gets a bundle it can
 * verify, and no registration fails on the CA after the gateway has approved it.
 */
export function registerCaRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  // One succession signature per rotation: this route needs no credential, so it must not sign per request.
  const successions = new WeakMap<CaRotationState, Promise<string>>();

  app.get("/api/v1/ca", async (_request, reply): Promise<CaBundleResponse> => {
    const { rotation } = ctx.tls;
    reply.header("cache-control", "no-store");
    if (!rotation) return { caBundle: ctx.tls.caBundle() };
    let nextSignature = successions.get(rotation);
    if (!nextSignature) {
      nextSignature = signCaSuccession(ctx.tls.ca, rotation.statement);
      successions.set(rotation, nextSignature);
    }
    return {
      caBundle: ctx.tls.caBundle(),
      caRotation: {
        statement: rotation.statement,
        signature: rotation.signature,
        nextSignature: await nextSignature,
      },
    };
  });
}
