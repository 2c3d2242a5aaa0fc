// spool.js: follow an agentspool stream from a browser page (an ES module, served by the app).
//
//   import { openSessionStream, tokenMinter } from "/static/spool.js";
//   const stream = openSessionStream(sessionId, {
//     token: tokenMinter(apiKey, { sessionId }),
//     onEvent: (envelope) => console.log(envelope.seq, envelope.type, envelope.data),
//   });
//   stream.close();
//
// EventSource cannot send headers, so a stream opens with a stream token in the URL
// (`?access_token=`). `token` is an async function that makes one (POST /v1/stream_tokens);
// it is called to open, again before each token runs out (then the stream is reopened with the
// new one after the last id), and after the server refused a connection. Every SSE event is
// named by its event type, so the module listens for each of EVENT_TYPES (`onmessage` would get
// nothing). Ids are remembered: a reconnect, the browser's or ours, resumes after the last one,
// an id seen before is dropped, and on a session stream (ids are seq: 1, 2, 3, ...) a hole is
// reported to `onGap`.

// Every event type the server appends, as the server that serves this file knows them.
export const EVENT_TYPES = Object.freeze([/* the event types, filled in by the server */]);

const SECOND = 1000;

// An answer of the API that is not a success: `status`, and the error envelope's `type`.
export class SpoolError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.name = "SpoolError";
    this.status = status;
    this.type = error.type || null;
  }

  // Whether asking again can help (429, 5xx, the network), unlike a refusal (401, 403, 404).
  get retryable() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

// A `token` function for a stream option: makes stream tokens with an API key (the tenant's,
// or only `sessionId`'s). `lifetimeMs` is measured on the server's clock when it can be.
export function tokenMinter(apiKey, { sessionId = null, ttlSeconds = null, tenant = null,
                                      baseUrl = "" } = {}) {
  return async () => {
    const body = {};
    if (sessionId) body.session_id = sessionId;
    if (ttlSeconds) body.ttl_seconds = ttlSeconds;
    const headers = { "Authorization": `Bearer ${apiKey}`, "Content-Type": "application/json" };
    if (tenant) headers["Spool-Tenant"] = tenant;
    let response;
    try {
      response = await fetch(`${baseUrl}/v1/stream_tokens`,
                             { method: "POST", headers, body: JSON.stringify(body) });
    } catch (error) {
      throw new SpoolError(0, { error: { message: `no answer: ${error.message}` } });
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new SpoolError(response.status, answer);
    const now = Date.parse(response.headers.get("Date") || "") || Date.now();
    return { ...answer, lifetimeMs: Date.parse(answer.expires_at) - now };
  };
}

// A session's stream: ids are seq, contiguous. Ends (closes itself) after `session_archived`.
export function openSessionStream(sessionId, options) {
  return new SpoolStream(`/v1/sessions/${encodeURIComponent(sessionId)}/stream`,
                         { ...options, contiguous: true, query: {} });
}

// The tenant's stream (the firehose): ids are positions, increasing but not contiguous.
// `types` and `streamType` filter it on the server.
export function openTenantStream(options = {}) {
  const query = {};
  if (options.types) query.types = options.types.join(",");
  if (options.streamType) query.stream_type = options.streamType;
  return new SpoolStream("/v1/events/stream", { ...options, contiguous: false, query });
}

// One stream, kept open across dropped connections, server restarts and token expiry.
// Options: token (required), onEvent(envelope, type, id), after (resume after this id),
// types (deliver only these), onOpen(), onGap({expected, got}), onError(error, {fatal}),
// renewBeforeSeconds (renew this long before the token runs out; default a fifth of its
// lifetime, at most a minute), baseUrl.
export class SpoolStream {
  constructor(path, options) {
    if (typeof options.token !== "function") throw new TypeError("token: a function is needed");
    this.path = path;
    this.options = options;
    this.lastId = options.after || 0;
    this.opens = 0;  // connections opened, the browser's reconnects included
    this.renewals = 0;  // tokens made after the first
    this.duplicatesDropped = 0;
    this.gaps = 0;
    this.closed = false;
    this._deliver = new Set(options.types || EVENT_TYPES);
    this._source = null;
    this._token = null;
    this._renewTimer = null;
    this._retryTimer = null;
    this._failures = 0;
    this._connect();
  }

  // Whether a connection is open now (false while reconnecting, and once closed).
  get connected() {
    return this._source !== null && this._source.readyState === EventSource.OPEN;
  }

  close() {
    this.closed = true;
    clearTimeout(this._renewTimer);
    clearTimeout(this._retryTimer);
    if (this._source) this._source.close();
    this._source = null;
  }

  // A fresh token, then a connection after the last id; on failure, again later.
  async _connect() {
    if (!(await this._renew())) return;
    this._open();
  }

  // Makes a new token and plans the next renewal. False when there is none (retrying or done).
  async _renew() {
    let minted;
    try {
      minted = await this.options.token();
    } catch (error) {
      this._failed(error, () => this._connect());
      return false;
    }
    if (this.closed) return false;
    if (this._token !== null) this.renewals += 1;
    this._token = minted.token;
    const lifetime = minted.lifetimeMs ?? Date.parse(minted.expires_at) - Date.now();
    const before = this.options.renewBeforeSeconds != null
      ? this.options.renewBeforeSeconds * SECOND : Math.min(60 * SECOND, lifetime / 5);
    clearTimeout(this._renewTimer);
    this._renewTimer = setTimeout(() => this._renewed(), Math.max(SECOND, lifetime - before));
    return true;
  }

  // Before the token runs out: reopen with a new one, after the last id (no gap, and the
  // ids already seen are dropped), rather than count on the server's window for resumes.
  async _renewed() {
    if (await this._renew()) this._open();
  }

  _open() {
    if (this._source) this._source.close();
    const params = new URLSearchParams(this.options.query || {});
    if (this.lastId > 0) params.set("after", String(this.lastId));
    params.set("access_token", this._token);
    const source = new EventSource(`${this.options.baseUrl || ""}${this.path}?${params}`);
    this._source = source;
    source.onopen = () => {
      this.opens += 1;
      this._failures = 0;
      if (this.options.onOpen) this.options.onOpen();
    };
    // On a dropped connection the browser reconnects by itself (CONNECTING), sending
    // Last-Event-ID. CLOSED means the server refused it (401, 409, 503...): a new token, later.
    source.onerror = () => {
      if (source !== this._source || source.readyState !== EventSource.CLOSED) return;
      this._source = null;
      this._failed(new SpoolError(0, { error: { message: "the stream was refused" } }),
                   () => this._connect());
    };
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event) => this._receive(event));
    }
  }

  _receive(event) {
    const id = Number(event.lastEventId);
    if (!Number.isSafeInteger(id) || id <= 0) {
      this._report(new SpoolError(0, { error: { message: `an event without an id: ${id}` } }));
      return;
    }
    if (id <= this.lastId) {
      this.duplicatesDropped += 1;
      return;
    }
    if (this.options.contiguous && id !== this.lastId + 1) {
      this.gaps += 1;
      const gap = { expected: this.lastId + 1, got: id };
      if (this.options.onGap) this.options.onGap(gap);
      else console.error(`spool.js: ${this.path}: event ${gap.got} after ${this.lastId}`);
    }
    this.lastId = id;
    if (this._deliver.has(event.type) && this.options.onEvent) {
      this.options.onEvent(JSON.parse(event.data), event.type, id);
    }
    if (this.options.contiguous && event.type === "session_archived") this.close();
  }

  // Retry `again` with a growing delay (0.5 s doubling, at most 30 s), unless it cannot help.
  _failed(error, again) {
    if (this.closed) return;
    const fatal = error instanceof SpoolError && !error.retryable;
    this._report(error, fatal);
    if (fatal) {
      this.close();
      return;
    }
    const delay = Math.min(30 * SECOND, 500 * 2 ** this._failures);
    this._failures += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(again, delay);
  }

  _report(error, fatal = false) {
    if (this.options.onError) this.options.onError(error, { fatal });
    else console.warn(`spool.js: ${this.path}: ${error.message}`);
  }
}
