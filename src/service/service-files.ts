import os from "node:os";
import path from "node:path";

/**
 * Service definitions that run `gatehouse gateway|node start --home HOME` and hold no credential:
 * every secret stays in the home (keys, 0600) or behind a reference in its config. A systemd user
 * unit on Linux, a LaunchAgent on macOS.
 */
export type ServiceRole = "gateway" | "node";
export type ServicePlatform = "linux" | "darwin";

export interface ServiceSpec {
  role: ServiceRole;
  home: string;
  /** The Node.js binary and the CLI script, as absolute paths. */
  nodePath: string;
  cliPath: string;
}

export interface ServiceFile {
  platform: ServicePlatform;
  path: string;
  content: string;
  /** What to run next to load it. */
  next: string[];
}

export function serviceName(role: ServiceRole): string {
  return `gatehouse-${role}`;
}

function argv(spec: ServiceSpec): string[] {
  return [spec.nodePath, spec.cliPath, spec.role, "start", "--home", spec.home];
}

/** systemd's quoting: double quotes, with backslash, quote, % and $ escaped. */
function systemdQuote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg) && !arg.includes("%")) return arg;
  return `"${arg.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/%/g, "%%").replace(/\$/g, "$$$$")}"`;
}

export function renderSystemdUnit(spec: ServiceSpec): string {
  const what = spec.role === "gateway" ? "Gatehouse gateway" : "Gatehouse node agent";
  return [
    "[Unit]",
    `Description=${what} (home ${spec.home})`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${argv(spec).map(systemdQuote).join(" ")}`,
    "Restart=on-failure",
    "RestartSec=5",
    // Credentials live in the home (keys 0600) or behind references in its config, never here.
    "UMask=0077",
    "NoNewPrivileges=true",
    "",
    "[Install]",
    "WantedBy=default.target",
    "",
  ].join("\n");
}

function xmlEscape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

export function launchAgentLabel(role: ServiceRole): string {
  return `dev.gatehouse.${role}`;
}

export function renderLaunchAgent(spec: ServiceSpec): string {
  const log = (stream: string) => xmlEscape(path.join(spec.home, "logs", `${spec.role}.${stream}.log`));
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    "<dict>",
    "  <key>Label</key>",
    `  <string>${launchAgentLabel(spec.role)}</string>`,
    "  <key>ProgramArguments</key>",
    "  <array>",
    ...argv(spec).map((arg) => `    <string>${xmlEscape(arg)}</string>`),
    "  </array>",
    "  <key>RunAtLoad</key>",
    "  <true/>",
    "  <key>KeepAlive</key>",
    "  <dict>",
    "    <key>SuccessfulExit</key>",
    "    <false/>",
    "  </dict>",
    "  <key>Umask</key>",
    "  <integer>63</integer>",
    "  <key>StandardOutPath</key>",
    `  <string>${log("out")}</string>`,
    "  <key>StandardErrorPath</key>",
    `  <string>${log("err")}</string>`,
    "</dict>",
    "</plist>",
    "",
  ].join("\n");
}

/** Where the file goes and how to load it, for this platform. */
export function serviceFile(
  spec: ServiceSpec,
  platform: ServicePlatform,
  userHome = os.homedir(),
): ServiceFile {
  if (platform === "darwin") {
    const file = path.join(userHome, "Library", "LaunchAgents", `${launchAgentLabel(spec.role)}.plist`);
    return {
      platform,
      path: file,
      content: renderLaunchAgent(spec),
      next: [`mkdir -p ${path.join(spec.home, "logs")}`, `launchctl bootstrap gui/$(id -u) ${file}`],
    };
  }
  const file = path.join(userHome, ".config", "systemd", "user", `${serviceName(spec.role)}.service`);
  return {
    platform,
    path: file,
    content: renderSystemdUnit(spec),
    next: [
      "systemctl --user daemon-reload",
      `systemctl --user enable --now ${serviceName(spec.role)}`,
      "loginctl enable-linger $USER   # to keep it running while you are logged out",
    ],
  };
}
