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
    refetchInterval: 30_000,
  });
}

/** Back to the sign-in page, forgetting everything the previous user's pages loaded. */
export function signedOut(qc: QueryClient) {
  qc.setQueryData(["me"], null);
  qc.removeQueries({ predicate: (q) => q.queryKey[0] !== "me" });
}
