// api.js: the public HTTP API, as the console calls it (the same requests curl would make).
//
//   const api = client(apiKey);
//   const session = await api.get(`/v1/sessions/${id}`);
//   for await (const summary of api.pages("/v1/sessions", { status: "running" })) ...
//
// Every answer that is not a success throws ApiError with the error envelope's fields.

export class ApiError extends Error {
  constructor(status, body, requestId = null) {
    const error = (body && body.error) || {};
    super(error.message || (status === 0 ? "no answer from the server" : `HTTP ${status}`));
    this.name = "ApiError";
    this.status = status;  // 0: no answer (the network, or the server is down)
    this.type = error.type || null;
    this.details = error.details || null;
    this.requestId = requestId;
  }
}

// `onUnauthorized(error)` is called on a 401 (the key was revoked or never valid).
export function client(key, { baseUrl = "", onUnauthorized = null } = {}) {
  async function request(method, path, { query, body, idempotencyKey } = {}) {
    const headers = { "Authorization": `Bearer ${key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    let response;
    try {
      response = await fetch(baseUrl + path + queryString(query), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      throw new ApiError(0, { error: { type: "network",
                                       message: `no answer from the server (${error.message})` } });
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!response.ok) {
      const error = new ApiError(response.status, data, response.headers.get("X-Request-Id"));
      if (response.status === 401 && onUnauthorized) onUnauthorized(error);
      throw error;
    }
    return data;
  }

  const get = (path, query) => request("GET", path, { query });
  return {
    key,
    get,
    post: (path, body, { idempotencyKey, query } = {}) =>
      request("POST", path, { body: body === undefined ? {} : body, idempotencyKey, query }),
    patch: (path, body) => request("PATCH", path, { body }),
    del: (path) => request("DELETE", path),
    // Every item of a paged list ({data, has_more, next_cursor}), page after page.
    async *pages(path, query = {}) {
      let after = query.after;
      for (;;) {
        const page = await get(path, { ...query, after });
        yield* page.data;
        if (!page.has_more || page.next_cursor == null) return;
        after = page.next_cursor;
      }
    },
  };
}

// "?a=1&b=x" from an object; null, undefined and "" are left out.
export function queryString(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

// An idempotency key for one user action (a retry of the same action reuses it).
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));  // randomUUID needs https
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
