// Device keys are made here, in the browser, with WebCrypto X25519. The private key is
// exported once to build the config and is never sent anywhere: only the public key goes
// to the server.

import type { ConfigTemplate } from "./types";

export interface KeyPair {
  /** Standard base64 of the 32-byte private scalar, as wg-quick wants it. */
  privateKey: string;
  /** Standard base64 of the 32-byte public key. */
  publicKey: string;
}

/** Why keys cannot be made in this browser, or `undefined` when they can. */
export function keygenUnavailable(): string | undefined {
  if (!window.isSecureContext) {
    return "This page is not a secure context: open the dashboard over HTTPS (or on localhost) so the browser can make keys.";
  }
  if (!window.crypto?.subtle) return "This browser has no WebCrypto.";
  return undefined;
}

function base64urlToBase64(s: string): string {
  const b = s.replace(/-/g, "+").replace(/_/g, "/");
  return b + "=".repeat((4 - (b.length % 4)) % 4);
}

/** A fresh X25519 key pair. Throws a readable error where the browser lacks X25519. */
export async function generateKeyPair(): Promise<KeyPair> {
  const why = keygenUnavailable();
  if (why) throw new Error(why);
  let pair: CryptoKeyPair;
  try {
    pair = (await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"])) as CryptoKeyPair;
  } catch {
    throw new Error("This browser cannot make X25519 keys (WebCrypto). Use a current Chrome, Edge, Firefox or Safari, or the clawn CLI.");
  }
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  if (!jwk.d || !jwk.x) throw new Error("The browser exported an incomplete key.");
  return { privateKey: base64urlToBase64(jwk.d), publicKey: base64urlToBase64(jwk.x) };
}

/**
 * The wg-quick file, line for line what `ConfigTemplate::render` in clawn-proto writes
 * (the CLI renders with that code, so a config looks the same whichever client made it).
 */
export function renderConfig(t: ConfigTemplate, privateKey: string): string {
  let out = "[Interface]\n";
  out += `PrivateKey = ${privateKey}\n`;
  out += `Address = ${t.address}\n`;
  if (t.dns.length > 0) out += `DNS = ${t.dns.join(", ")}\n`;
  if (t.mtu != null) out += `MTU = ${t.mtu}\n`;
  out += "\n[Peer]\n";
  out += `PublicKey = ${t.peer_public_key}\n`;
  out += `AllowedIPs = ${t.allowed_ips.join(", ")}\n`;
  out += `Endpoint = ${t.endpoint}\n`;
  if (t.persistent_keepalive > 0) out += `PersistentKeepalive = ${t.persistent_keepalive}\n`;
  return out;
}

/** A file name wg-quick accepts for the interface (`[a-zA-Z0-9_=+.-]{1,15}`). */
export function confFileName(deviceName: string): string {
  const base = deviceName.replace(/[^a-zA-Z0-9_=+.-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 15);
  return `${base || "clawn"}.conf`;
}
