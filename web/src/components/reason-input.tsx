/** A reason is one short sentence for the audit log, not a document. */
const MAX_REASON = 500;

/**
 * The optional free-text reason typed before deny or revoke; `label` is its accessible name,
 * which the page's tests and screen readers find it by.
 */
export function ReasonInput({
  label,
  value,
  disabled,
  onChange,
}: {
  label: string;
  value: string;
  disabled: boolean;
  onChange: (value: string) => void;
}) {
  return (
    <input
      type="text"
      aria-label={label}
      placeholder="Reason (optional)"
      maxLength={MAX_REASON}
      value={value}
      disabled={disabled}
      onInput={(event) => onChange(event.currentTarget.value)}
    />
  );
}
