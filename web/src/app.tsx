import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, forgetSession, getJson, loadSession, postJson } from "./api.js";
import { ErrorAlert } from "./components/error-alert.js";
import { startLive, type ClosedVerdict, type LiveState } from "./live.js";
import { AuditPage } from "./pages/audit.js";
import { DevicesPage } from "./pages/devices.js";
import { PendingPage } from "./pages/pending.js";
import { RefusalsPage } from "./pages/refusals.js";
import { Command } from "./components/command.js";
import type { DashboardSession, DeviceView, NodeView } from "./types.js";
import { useResource } from "./use-resource.js";

const TABS = [
  { id: "pending", label: "Pending" },
  { id: "devices", label: "Devices and nodes" },
  { id: "refusals", label: "Refusals" },
  { id: "audit", label: "Audit" },
] as const;
type Tab = (typeof TABS)[number]["id"];

/** How long a status line ("Approved laptop as node.") stays. */
const NOTICE_MS = 8_000;

const LIVE_TEXT: Record<LiveState, string> = {
  connecting: "Connecting…",
  on: "Live",
  reconnecting: "Reconnecting…",
  off: "Live off",
};

/** The tab a hash names: `#/audit?actor=…` is the Audit tab (its filters follow the `?`). */
function tabFromHash(): Tab {
  const id = window.location.hash.replace(/^#\/?/, "").split("?")[0];
  return TABS.find((tab) => tab.id === id)?.id ?? "pending";
}

type State =
  | { kind: "loading" }
  | { kind: "in"; session: DashboardSession }
  | { kind: "out"; reason: "none" | "ended" | "logout" }
  | { kind: "failed"; error: unknown };

/** The page: asks for the dashboard session first; without one it says how to get a login link. */
export function App() {
  const [state, setState] = useState<State>({ kind: "loading" });

  const checkSession = useCallback((whenGone: "none" | "ended") => {
    forgetSession();
    loadSession().then(
      (session) => setState({ kind: "in", session }),
      (error: unknown) =>
        setState((current) => {
          // After a logout the stream's end also reports the session gone: keep "You are logged out."
          if (current.kind === "out") return current;
          if (error instanceof ApiError && error.loggedOut) return { kind: "out", reason: whenGone };
          // A page already in use keeps showing what it has while the gateway is unreachable.
          return current.kind === "in" ? current : { kind: "failed", error };
        }),
    );
  }, []);

  useEffect(() => checkSession("none"), [checkSession]);
  // One function for the page's life: the event stream is opened again only when it changes.
  const sessionGone = useCallback(() => checkSession("ended"), [checkSession]);

  if (state.kind === "loading") return <p class="splash muted">Loading…</p>;
  if (state.kind === "out") return <LoggedOut reason={state.reason} />;
  if (state.kind === "failed") {
    return (
      <main class="splash">
        <h1>Gatehouse</h1>
        <ErrorAlert error={state.error} />
        <button type="button" onClick={() => checkSession("none")}>
          Try again
        </button>
      </main>
    );
  }
  return (
    <Dashboard
      session={state.session}
      onSessionGone={sessionGone}
      onLoggedOut={() => setState({ kind: "out", reason: "logout" })}
    />
  );
}

function LoggedOut({ reason }: { reason: "none" | "ended" | "logout" }) {
  const lead =
    reason === "logout"
      ? "You are logged out."
      : reason === "ended"
        ? "This dashboard session ended or expired."
        : "You are not logged in.";
  useEffect(() => {
    document.title = "Gatehouse";
  }, []);
  return (
    <main class="splash">
      <h1>Gatehouse</h1>
      <p>{lead}</p>
      <p class="login-hint">
        Run <Command text="gatehouse dashboard" /> to log in.
      </p>
      <p class="muted">It prints a single-use link that opens this page with a new session.</p>
    </main>
  );
}

interface DashboardProps {
  session: DashboardSession;
  onSessionGone: () => void;
  onLoggedOut: () => void;
}

function Dashboard({ session, onSessionGone, onLoggedOut }: DashboardProps) {
  const [tab, setTab] = useState<Tab>(tabFromHash);
  const [live, setLive] = useState<LiveState>("connecting");
  const [notice, setNotice] = useState("");
  const noticeTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  // The last version each node reported while this page was open: an offline node keeps it.
  const lastVersions = useRef(new Map<string, string>());
  const [logoutError, setLogoutError] = useState<unknown>();
  const scopes = new Set(session.scopes);
  const canWrite = scopes.has("devices:write");
  const canSeeNodes = scopes.has("node:status");

  useEffect(() => {
    const follow = () => setTab(tabFromHash());
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);

  /** A short line saying what an action did (role="status"); it goes after a while. */
  const announce = useCallback((message: string) => {
    clearTimeout(noticeTimer.current);
    setNotice(message);
    noticeTimer.current = setTimeout(() => setNotice(""), NOTICE_MS);
  }, []);
  useEffect(() => () => clearTimeout(noticeTimer.current), []);

  // Asked once per closed stream: a role without devices:read is refused the stream for good,
  // so the page stops asking (and says so) instead of opening it again and again.
  const whenClosed = useCallback(async (): Promise<ClosedVerdict> => {
    forgetSession();
    try {
      const fresh = await loadSession();
      return fresh.scopes.includes("devices:read") ? "retry" : "refused";
    } catch (error) {
      if (!(error instanceof ApiError && error.loggedOut)) return "retry";
      onSessionGone();
      return "ended";
    }
  }, [onSessionGone]);
  useEffect(() => startLive(whenClosed, setLive), [whenClosed]);

  // A device's online flag changes with its node session: devices follow both topics.
  const devices = useResource(["devices", "nodes"], "", () =>
    getJson<{ devices: DeviceView[] }>("/api/v1/devices").then((body) => body.devices),
  );
  const nodes = useResource(["nodes"], String(canSeeNodes), () =>
    canSeeNodes
      ? getJson<{ nodes: NodeView[] }>("/api/v1/nodes").then((body) => body.nodes)
      : Promise.resolve([] as NodeView[]),
  );

  const gone = [devices.error, nodes.error].some((error) => error instanceof ApiError && error.loggedOut);
  useEffect(() => {
    if (gone) onSessionGone();
  }, [gone, onSessionGone]);

  for (const node of nodes.data ?? [])
    if (node.version) lastVersions.current.set(node.deviceId, node.version);
  const deviceNames = new Map((devices.data ?? []).map((device) => [device.deviceId, device.name]));
  const pendingCount = (devices.data ?? []).filter((device) => device.status === "pending").length;
  useEffect(() => {
    document.title = pendingCount > 0 ? `(${pendingCount}) Gatehouse` : "Gatehouse";
  }, [pendingCount]);

  const logout = async () => {
    setLogoutError(undefined);
    try {
      await postJson("/api/v1/dashboard/logout");
      forgetSession();
      onLoggedOut();
    } catch (error) {
      setLogoutError(error);
    }
  };

  const reloadDevices = () => {
    devices.reload();
    nodes.reload();
  };

  return (
    <>
      <header class="topbar">
        <div class="brand">
          <span class="brand-mark" aria-hidden="true" />
          <span class="brand-name">Gatehouse</span>
        </div>
        <div class="session">
          <span
            class={`live ${live === "on" ? "live-on" : "live-off"}`}
            data-testid="live-state"
            title="Updates from the gateway as they happen"
          >
            {LIVE_TEXT[live]}
          </span>
          <span class="role-badge" data-testid="role-badge" title={`Logged in as ${session.subject}`}>
            {session.role}
          </span>
          <button type="button" class="quiet" onClick={() => void logout()}>
            Logout
          </button>
        </div>
      </header>
      <nav class="tabs" aria-label="Sections">
        {TABS.map(({ id, label }) => (
          <a key={id} href={`#/${id}`} class="tab" aria-current={tab === id ? "page" : undefined}>
            {label}
            {/* Always there, hidden at 0: the tabs after it do not move when the count goes. */}
            {id === "pending" ? (
              <span
                class={pendingCount > 0 ? "count" : "count count-none"}
                aria-hidden={pendingCount > 0 ? undefined : "true"}
              >
                {pendingCount > 0 ? pendingCount : "0"}
              </span>
            ) : null}
          </a>
        ))}
      </nav>
      <main class="content">
        {live === "off" ? (
          <p class="notice" data-testid="live-off">
            Live updates are off: this session's role cannot read devices.
          </p>
        ) : null}
        <p role="status" class="status-line" data-testid="action-status">
          {notice}
        </p>
        <ErrorAlert error={logoutError} />
        {tab === "pending" || tab === "devices" ? <ErrorAlert error={devices.error ?? nodes.error} /> : null}
        {tab === "pending" && devices.data ? (
          <PendingPage
            devices={devices.data}
            canWrite={canWrite}
            onChanged={reloadDevices}
            onDone={announce}
          />
        ) : null}
        {tab === "devices" && devices.data ? (
          <DevicesPage
            devices={devices.data}
            versions={lastVersions.current}
            canWrite={canWrite}
            onChanged={reloadDevices}
            onDone={announce}
          />
        ) : null}
        {tab === "refusals" ? <RefusalsPage /> : null}
        {tab === "audit" ? (
          <AuditPage canRead={scopes.has("audit:read")} devices={devices.data} deviceNames={deviceNames} />
        ) : null}
      </main>
    </>
  );
}
