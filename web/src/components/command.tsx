/** A shell command as the reader types it, in a <code> element (never with literal backticks). */
export function Command({ text }: { text: string }) {
  return <code class="command">{text}</code>;
}
