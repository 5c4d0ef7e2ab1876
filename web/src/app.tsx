import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError, forgetSession, getJson, loadSession, postJson } from "./api.js";
import { ErrorAlert } from "./components/error-alert.js";
import { startLive } from "./live.js";
import { AuditPage } from "./pages/audit.js";
import { DevicesPage } from "./pages/devices.js";
import { PendingPage } from "./pages/pending.js";
import { RefusalsPage } from "./pages/refusals.js";
import type { DashboardSession, DeviceView, NodeView } from "./types.js";
import { useResource } from "./use-resource.js";

const TABS = [
  { id: "pending", label: "Pending" },
  { id: "devices", label: "Devices and nodes" },
  { id: "refusals", label: "Refusals" },
  { id: "audit", label: "Audit" },
] as const;
type Tab = (typeof TABS)[number]["id"];

function tabFromHash(): Tab {
  const id = window.location.hash.replace(/^#\/?/, "");
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
      onSessionGone={() => checkSession("ended")}
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
      <p class="login-hint">Run `gatehouse dashboard` to log in.</p>
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
  // undefined until the stream first answers: "Connecting…", not "Reconnecting…".
  const [live, setLive] = useState<boolean>();
  const [logoutError, setLogoutError] = useState<unknown>();
  const scopes = new Set(session.scopes);
  const canWrite = scopes.has("devices:write");
  const canSeeNodes = scopes.has("node:status");

  useEffect(() => {
    const follow = () => setTab(tabFromHash());
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);

  useEffect(() => startLive(onSessionGone, setLive), [onSessionGone]);

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
            class={`live ${live ? "live-on" : "live-off"}`}
            title="Updates from the gateway as they happen"
          >
            {live ? "Live" : live === undefined ? "Connecting…" : "Reconnecting…"}
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
            {id === "pending" && pendingCount > 0 ? <span class="count">{pendingCount}</span> : null}
          </a>
        ))}
      </nav>
      <main class="content">
        <ErrorAlert error={logoutError} />
        {tab === "pending" || tab === "devices" ? <ErrorAlert error={devices.error ?? nodes.error} /> : null}
        {tab === "pending" && devices.data ? (
          <PendingPage devices={devices.data} canWrite={canWrite} onChanged={reloadDevices} />
        ) : null}
        {tab === "devices" && devices.data ? (
          <DevicesPage
            devices={devices.data}
            nodes={nodes.data ?? []}
            canWrite={canWrite}
            onChanged={reloadDevices}
          />
        ) : null}
        {tab === "refusals" ? <RefusalsPage /> : null}
        {tab === "audit" ? <AuditPage canRead={scopes.has("audit:read")} deviceNames={deviceNames} /> : null}
      </main>
    </>
  );
}
