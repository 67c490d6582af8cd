// Small display helpers.

import type { MoveReason } from "./types";

export function bytes(n: number | null | undefined): string {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function rate(n: number | null | undefined): string {
  if (n == null) return "–";
  const bits = n * 8;
  if (bits < 1000) return `${bits} bit/s`;
  if (bits < 1e6) return `${(bits / 1e3).toFixed(1)} kbit/s`;
  if (bits < 1e9) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  return `${(bits / 1e9).toFixed(2)} Gbit/s`;
}

export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms == null) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} d ago`;
}

export function dateTime(ms: number | null | undefined): string {
  if (ms == null) return "–";
  return new Date(ms).toLocaleString();
}

/** A 0..=1 ratio as a percentage ("12 %", "0.5 %" below 1 %). */
export function percent(ratio: number | null | undefined): string {
  if (ratio == null || !Number.isFinite(ratio)) return "–";
  const p = ratio * 100;
  return `${p > 0 && p < 1 ? p.toFixed(1) : Math.round(p)} %`;
}

/** Milliseconds of a round trip ("0.42 ms", "12.3 ms", "180 ms"). */
export function millis(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return "–";
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

/** A score part or total, two decimals (0 = idle, 1 = saturated). */
export function score(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return "–";
  return v.toFixed(2);
}

/** A length of time ("45 s", "3 min", "2 h 5 min", "3 d"). */
export function duration(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  return `${Math.round(h / 24)} d`;
}

/** Why the system moved a device, in words. */
export function moveReason(r: MoveReason | null | undefined): string {
  switch (r) {
    case "failover":
      return "its node went offline";
    case "drain":
      return "its node is being emptied";
    case "reassign":
      return "moved to another region";
    default:
      return r ?? "moved";
  }
}

/** Why a node takes no new devices, in words. */
export function ineligibleReason(r: string | null | undefined): string {
  if (!r) return "not eligible";
  if (r.startsWith("state:")) return `state is ${r.slice(6)}`;
  if (r === "heartbeat_stale") return "no recent heartbeat";
  if (r === "full") return "full (no free capacity)";
  return r;
}
