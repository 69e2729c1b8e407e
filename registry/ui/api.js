// The registry's read API with the token the user pasted (kept for this tab only).
const KEY = "weft.token";

export class NeedToken extends Error {}

export function setToken(secret) {
  if (secret) sessionStorage.setItem(KEY, secret);
  else sessionStorage.removeItem(KEY);
}

export async function get(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(KEY);
  if (token) headers["X-Consul-Token"] = token;
  const resp = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
  if (resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    throw new NeedToken(body?.error?.message || "this server needs a read token");
  }
  if (!resp.ok) {
    const body = await resp.json().catch(() => null);
    throw new Error(body?.error?.message || `${path}: HTTP ${resp.status}`);
  }
  return resp.json();
}

export async function getOr(path, params, fallback) {
  try {
    return await get(path, params);
  } catch (err) {
    if (err instanceof NeedToken) throw err;
    return fallback;
  }
}
