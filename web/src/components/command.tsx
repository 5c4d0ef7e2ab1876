/** A shell command as the reader types it, in a <code> element (never with literal backticks). */
export function Command({ text }: { text: string }) {
  return <code class="command">{text}</code>;
}

/**
 * A reply's hint as a person reads it: the gateway writes the commands in a hint between
 * backticks (`Run \`gatehouse dashboard\` again`), shown here as <Command> without them.
 */
export function HintText({ text }: { text: string }) {
  // split with a capture group: the commands stand at the odd indexes.
  const parts = text.split(/`([^`]+)`/);
  return <>{parts.map((part, index) => (index % 2 === 1 ? <Command key={index} text={part} /> : part))}</>;
}
