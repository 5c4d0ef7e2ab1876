import { getJson } from "../api.js";
import { ErrorAlert } from "../components/error-alert.js";
import { RelativeTime } from "../components/relative-time.js";
import { fingerprintPrefix } from "../format.js";
import type { Refusal } from "../types.js";
import { useResource } from "../use-resource.js";

const LIMIT = 100;

const loadRefusals = () =>
  getJson<{ refusals: Refusal[] }>(`/api/v1/refusals?limit=${LIMIT}`).then((body) => body.refusals);

/** Refusals: the last refused attempts, newest first — why a node cannot connect. */
export function RefusalsPage() {
  const { data, error } = useResource(["refusals"], "", loadRefusals);
  return (
    <section>
      <ErrorAlert error={error} />
      {data && data.length === 0 ? (
        <div class="empty">
          <p>No refused attempt since the gateway started.</p>
        </div>
      ) : null}
      {data && data.length > 0 ? (
        <div class="table-wrap">
          <table class="stack">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Address</th>
                <th scope="col">Code</th>
                <th scope="col">Credential</th>
                <th scope="col">Hint</th>
              </tr>
            </thead>
            <tbody>
              {data.map((refusal, index) => (
                <tr key={`${refusal.at}-${index}`} data-testid="refusal-row">
                  <td data-label="Time">
                    <RelativeTime iso={refusal.at} />
                  </td>
                  <td data-label="Address">{refusal.address}</td>
                  <td data-label="Code">
                    <code class="code-name">{refusal.code}</code>
                    <div class="cell-sub">{refusal.route}</div>
                  </td>
                  <td data-label="Credential">
                    <div>{refusal.credential}</div>
                    {refusal.fingerprint ? (
                      <code class="cell-sub" title={refusal.fingerprint}>
                        {fingerprintPrefix(refusal.fingerprint)}
                      </code>
                    ) : null}
                  </td>
                  <td data-label="Hint" class="hint-cell">
                    {refusal.hint}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
