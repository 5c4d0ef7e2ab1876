import { ApiError } from "../api.js";

/** An error from the API as text: its description and hint, in a role="alert" element. */
export function ErrorAlert({ error }: { error: unknown }) {
  if (!error) return null;
  const [description, hint] =
    error instanceof ApiError ? [error.description, error.hint] : [String(error), ""];
  return (
    <div role="alert" class="alert">
      <span class="alert-description">{description}</span>
      {hint ? <span class="alert-hint"> {hint}</span> : null}
    </div>
  );
}
