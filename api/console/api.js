// The API client: every call carries the Bearer token kept in session storage (never local storage,
// never a cookie), and a refusal becomes an ApiError with the server's code, field and message.

const KEY = 'cdp.token';

export const token = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || '';
    this.field = e.field || '';
  }
}

/// Calls the API; answers the parsed JSON (or the text, for CSV and NDJSON) and the response.
export async function call(method, path, { body, params, raw, signal, headers } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const h = { Authorization: `Bearer ${token.get()}`, ...(headers || {}) };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { error: { code: 'network', message: e.message } });
  }
  if (raw) {
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    return response;
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    const err = new ApiError(response.status, data);
    if (response.status === 401) window.dispatchEvent(new CustomEvent('cdp:unauthorized'));
    throw err;
  }
  return data;
}

export const get = (path, params, opts) => call('GET', path, { ...(opts || {}), params });
export const post = (path, body, opts) => call('POST', path, { ...(opts || {}), body });
export const put = (path, body, opts) => call('PUT', path, { ...(opts || {}), body });
export const del = (path, opts) => call('DELETE', path, opts || {});
export const enc = encodeURIComponent;

/// Reads `GET /v1/stream` (server-sent events) with the Bearer header, which EventSource cannot send:
/// `onOpen()` once connected, then `onEvent({event, id, data})` per message until `signal` aborts.
export async function stream(onEvent, signal, onOpen) {
  const response = await call('GET', '/v1/stream', { raw: true, signal, headers: { Accept: 'text/event-stream' } });
  if (onOpen) onOpen();
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const m = { event: 'message', id: '', data: '' };
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') m.event = v;
        else if (field === 'id') m.id = v;
        else if (field === 'data') data.push(v);
      }
      if (!data.length) continue;
      try { m.data = JSON.parse(data.join('\n')); } catch { m.data = data.join('\n'); }
      onEvent(m);
    }
  }
}
