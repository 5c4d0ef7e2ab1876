/**
 * Every value of one header, in the order the client sent them, from Node's raw header list
 * (`[name, value, name, value, …]`). Node keeps only the first of duplicate Host and Authorization
 * headers in `request.headers`; a parser that must refuse duplicates reads them here.
 */
export function rawHeaderValues(rawHeaders: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!);
  }
  return values;
}
