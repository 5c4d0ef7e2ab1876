import type { ComponentChildren } from "preact";

/**
 * A table whose rows stack into cards on a phone (class "stack"; each cell carries its column's
 * name as data-label): a header row of `columns`, then the caller's rows as `children`.
 */
export function StackTable({
  columns,
  children,
}: {
  columns: readonly string[];
  children: ComponentChildren;
}) {
  return (
    <table class="stack">
      <thead>
        <tr>
          {columns.map((name) => (
            <th key={name} scope="col">
              {name}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}
