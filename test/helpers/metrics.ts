/**
 * The sum of a metric's samples (over all its label sets) in a Prometheus text exposition, or
 * undefined when the exposition has no sample of it.
 */
export function metricSum(exposition: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of exposition.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
