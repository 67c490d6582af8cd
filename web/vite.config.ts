import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The dashboard is embedded into clawn-server (rust-embed over web/dist) and served from
// the server's own origin, so everything is same-origin and relative to `/`.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // No inline <script> for the module-preload polyfill: the CSP allows 'self' only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
  server: {
    // `npm run dev` proxies the API to a local clawn-server.
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
