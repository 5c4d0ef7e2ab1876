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
          <table>
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
                  <td>
                    <RelativeTime iso={refusal.at} />
                  </td>
                  <td>{refusal.address}</td>
                  <td>
                    <code class="code-name">{refusal.code}</code>
                    <div class="cell-sub">{refusal.route}</div>
                  </td>
                  <td>
                    <div>{refusal.credential}</div>
                    {refusal.fingerprint ? (
                      <code class="cell-sub" title={refusal.fingerprint}>
                        {fingerprintPrefix(refusal.fingerprint)}
                      </code>
                    ) : null}
                  </td>
                  <td class="hint-cell">{refusal.hint}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
