/**
 * A copy of a string that keeps no larger string alive, for a string kept long after what it was
 * read from: V8 makes a slice of a string (a field of a CSV line, say) as a reference to its parent,
 * which then lives as long as the slice does. A string under 13 characters is never a slice.
 */
export function detached(s: string): string {
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
}
