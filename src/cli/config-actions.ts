/**
 * What the `config` commands do, loaded only when one runs (their definitions are in
 * config-commands.ts).
 */
import {
  homeParties,
  GATEWAY_SECRET_SETTINGS,
  NODE_SECRET_SETTINGS,
  explainConfig,
  gatewayConfigSchema,
  loadGatewayConfig,
  loadNodeConfig,
  nodeConfigSchema,
  shortLifetimesAllowed,
  SHORT_LIFETIMES_WARNING,
  type ExplainedSetting,
} from "../config/index.js";
import type { CommandContext } from "./run.js";
import { printJson, table, printText } from "./output.js";

export interface ExplainedHome {
  kind: "gateway" | "node";
  file: string;
  settings: ExplainedSetting[];
  /** What the environment changes about how this file is read (tests' short lifetimes). */
  warnings?: string[];
}

/** The config of each party whose file is in this home, explained; flags as a run would get them. */
export function explainHome(
  home: string,
  flags: { listen?: string; gateway?: string } = {},
): ExplainedHome[] {
  const parties = homeParties(home);
  const homes: ExplainedHome[] = [];
  if (parties.gateway) {
    const loaded = loadGatewayConfig(home, flags.listen ? { listen: flags.listen } : {});
    homes.push({
      kind: "gateway",
      file: loaded.file,
      settings: explainConfig(loaded, gatewayConfigSchema, GATEWAY_SECRET_SETTINGS),
      ...(shortLifetimesAllowed() ? { warnings: [SHORT_LIFETIMES_WARNING] } : {}),
    });
  }
  if (parties.node) {
    const loaded = loadNodeConfig(home, flags.gateway ? { gatewayUrl: flags.gateway } : {});
    homes.push({
      kind: "node",
      file: loaded.file,
      settings: explainConfig(loaded, nodeConfigSchema, NODE_SECRET_SETTINGS),
    });
  }
  return homes;
}

function text(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function origin(setting: ExplainedSetting): string {
  const from = setting.source === "file" ? `file ${setting.file}` : setting.source;
  if (!setting.shadowed) return from;
  const hidden = setting.shadowed.source === "file" ? `${setting.shadowed.file}` : setting.shadowed.source;
  return `${from} (over ${text(setting.shadowed.value)} from ${hidden})`;
}

/** `config explain`: every effective setting, its value (secrets as references) and its source. */
export async function configExplain(
  ctx: CommandContext,
  options: { listen?: string; gateway?: string },
): Promise<void> {
  const homes = explainHome(ctx.home, options);
  if (ctx.json) {
    printJson({ home: ctx.home, configs: homes });
    return;
  }
  for (const explained of homes) {
    printText(`${explained.kind}: ${explained.file}\n`);
    printText(
      table(
        ["SETTING", "VALUE", "FROM"],
        explained.settings.map((s) => [s.key + (s.secret ? " (secret)" : ""), text(s.value), origin(s)]),
      ),
    );
    for (const warning of explained.warnings ?? []) printText(`warning: ${warning}\n`);
  }
}
