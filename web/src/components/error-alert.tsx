import { ApiError } from "../api.js";
import { asSentence } from "../format.js";
import { HintText } from "./command.js";

/**
 * An error from the API as text in a role="alert" element: its description and its hint as two
 * separate sentences (a description without a closing period gets one), never run together.
 */
export function ErrorAlert({ error }: { error: unknown }) {
  if (!error) return null;
  const [description, hint] =
    error instanceof ApiError ? [error.description, error.hint] : [String(error), ""];
  return (
    <div role="alert" class="alert">
      <p class="alert-description">
        <HintText text={asSentence(description)} />
      </p>
      {hint ? (
        <p class="alert-hint">
          <HintText text={hint} />
        </p>
      ) : null}
    </div>
  );
}
