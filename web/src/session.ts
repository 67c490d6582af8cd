// The signed-in user, shared by every page through the query cache.

import { useQuery, type QueryClient } from "@tanstack/react-query";
import { api, ApiError } from "./api";

/** How often live views (devices, nodes) refresh while the page is visible. */
export const LIVE_MS = 3000;

export function useMe() {
  return useQuery({
    queryKey: ["me"],
    queryFn: api.me,
    retry: (n, e) => !(e instanceof ApiError && (e.status === 401 || e.status === 403)) && n < 2,
    // While signed out there is nothing to refresh (and a failed sign-out must never be
    // undone by a poll): the sign-in itself sets the user.
    refetchInterval: (q) => (q.state.data === null ? false : 30_000),
    refetchOnWindowFocus: (q) => q.state.data !== null,
  });
}

const channel = typeof BroadcastChannel === "undefined" ? null : new BroadcastChannel("clawn-session");

/** Tells the other tabs of this browser that the session changed (sign-in, sign-out). */
export function announceSessionChange() {
  channel?.postMessage("changed");
}

/** Calls `f` when another tab announces a session change; returns the unsubscribe. */
export function onSessionChange(f: () => void): () => void {
  if (!channel) return () => {};
  const listener = () => f();
  channel.addEventListener("message", listener);
  return () => channel.removeEventListener("message", listener);
}

/** Back to the sign-in page, forgetting everything the previous user's pages loaded. */
export function signedOut(qc: QueryClient) {
  qc.setQueryData(["me"], null);
  qc.removeQueries({ predicate: (q) => q.queryKey[0] !== "me" });
}
