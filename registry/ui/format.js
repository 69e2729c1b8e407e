// Numbers as the CLI prints them (weft stat): "-" where there was no traffic.
export function pct(v) {
  return v === null || v === undefined ? "-" : `${(v * 100).toFixed(2)}%`;
}

export function rps(v) {
  v = v || 0;
  return v >= 1 ? v.toFixed(1) : v.toFixed(2);
}

export function ms(row, q) {
  const v = row.latency_ms ? row.latency_ms[q] : null;
  if (v === null || v === undefined || !Number.isFinite(v)) return "-";
  return v >= 10 ? `${v.toFixed(0)}ms` : `${v.toFixed(1)}ms`;
}

export function golden(row) {
  return [pct(row.success_rate), rps(row.rps), ms(row, "p50"), ms(row, "p95"), ms(row, "p99")];
}

export const GOLDEN = ["SUCCESS", "RPS", "P50", "P95", "P99"];

// Edge and cell colour classes by success rate (the topology's legend says the same).
export function health(rate) {
  if (rate === null || rate === undefined) return "idle";
  if (rate >= 0.99) return "good";
  if (rate >= 0.95) return "fair";
  return "poor";
}

export function until(iso) {
  const ms = Date.parse(iso) - Date.now();
  if (!Number.isFinite(ms)) return "-";
  const days = ms / 86400000;
  if (days >= 2) return `in ${days.toFixed(0)} days`;
  if (ms > 0) return `in ${(ms / 3600000).toFixed(1)} h`;
  return "expired";
}
