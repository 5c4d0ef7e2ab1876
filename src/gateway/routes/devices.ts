import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { printableSchema } from "../../protocol/messages.js";
import type { GatewayContext } from "../context.js";
import { requireScopeHook } from "../authenticate.js";
import { deviceView } from "../device-view.js";
import { onlineDevices } from "../cluster/online-nodes.js";
import { parseBody } from "../parse-body.js";
import { GatehouseError } from "../../protocol/errors.js";

const statusFilter = z.enum(["pending", "approved", "denied", "revoked"]).optional();
const approveBody = z.strictObject({ role: z.string().max(64).default("node") });
const reasonBody = z.strictObject({ reason: printableSchema("reason", 500).optional() });

export function registerDeviceRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const read = { onRequest: requireScopeHook(ctx, "devices:read") };
  const write = { onRequest: requireScopeHook(ctx, "devices:write") };
  const actor = (request: { principal?: { subject: string } }) => request.principal?.subject ?? "unknown";

  app.get<{ Querystring: { status?: string } }>("/api/v1/devices", read, async (request) => {
    const parsed = statusFilter.safeParse(request.query.status);
    if (!parsed.success) {
      throw new GatehouseError("invalid_request", "status must be pending, approved, denied or revoked");
    }
    const devices = ctx.devices
      .list()
      .filter((d) => !parsed.data || d.status === parsed.data)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    // Online on any live instance, as `nodes list` says (cluster/online-nodes.ts).
    const online = await onlineDevices(ctx);
    return {
      devices: devices.map((d) => deviceView(d, online.has(d.deviceId), ctx.failures.forDevice(d.deviceId))),
      ...(online.incomplete ? { incomplete: online.incomplete } : {}),
    };
  });

  app.get<{ Params: { id: string } }>("/api/v1/devices/:id", read, async (request) => {
    const { device } = await ctx.registrations.resolveDevice(request.params.id);
    const certificates = await ctx.store.listCertificates(device.deviceId);
    const online = await onlineDevices(ctx);
    return {
      device: deviceView(device, online.has(device.deviceId), ctx.failures.forDevice(device.deviceId)),
      certificates: certificates.map(({ pem: _pem, ...rest }) => rest),
      ...(online.incomplete ? { incomplete: online.incomplete } : {}),
    };
  });

  app.post<{ Params: { id: string } }>("/api/v1/devices/:id/approve", write, async (request) => {
    const { role } = parseBody(approveBody, request.body);
    const device = await ctx.registrations.approve(request.params.id, role, actor(request));
    return { device: deviceView(device, (await onlineDevices(ctx)).has(device.deviceId)) };
  });

  app.post<{ Params: { id: string } }>("/api/v1/devices/:id/deny", write, async (request) => {
    const { reason } = parseBody(reasonBody, request.body);
    const device = await ctx.registrations.deny(request.params.id, reason, actor(request));
    return { device: deviceView(device, false) };
  });

  app.post<{ Params: { id: string } }>("/api/v1/devices/:id/revoke", write, async (request) => {
    const { reason } = parseBody(reasonBody, request.body);
    // With several instances the sessions the others hold are read before the revocation: they
    // close them as they hear of it (the change feed), often before a read made afterwards.
    const elsewhere = ctx.relay ? await ctx.relay.remoteSessions().catch(() => null) : undefined;
    const { device, sessionsClosed } = await ctx.registrations.revoke(
      request.params.id,
      reason,
      actor(request),
      request.principal?.onBehalfOf,
    );
    return {
      device: deviceView(device, false),
      sessionsClosed,
      // Only with several instances (alone the answer is as it always was): the open sessions the
      // other live instances held, which they close within about a second; null when unread.
      ...(elsewhere === undefined
        ? {}
        : {
            sessionsOnOtherInstances:
              elsewhere?.filter(({ session }) => session.deviceId === device.deviceId).length ?? null,
          }),
    };
  });
}
