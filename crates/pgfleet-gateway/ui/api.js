// The API client: the key lives in this tab's session storage only.
const KEY = "pgfleet.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY) || ""; },
  set key(v) { if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY); },
  me: null,
  get admin() { return this.me?.scope === "admin"; },
};

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem?.detail || problem?.title || `HTTP ${status}`;
    super(problem?.field ? `${detail} (field ${problem.field})` : detail);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { authorization: `Bearer ${session.key}`, "content-type": "application/json", ...(options.headers || {}) },
  });
  if (!res.ok) {
    let problem = null;
    try { problem = await res.json(); } catch { /* not problem+json */ }
    throw new ApiError(res.status, problem);
  }
  return res.status === 204 ? null : res.json();
}

export const post = (path, body) => api(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
