// The box's HTTP API: JSON in and out, the CSRF token on unsafe calls, one error shape, SSE events.
let csrf = null;

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

export function setCsrf(token) { csrf = token || null; }

function headersFor(method, json) {
  const headers = {};
  if (json) headers['Content-Type'] = 'application/json';
  if (csrf && !['GET', 'HEAD'].includes(method)) headers['X-CSRF-Token'] = csrf;
  return headers;
}

export function toLogin() {
  const next = location.pathname + location.search + location.hash;
  location.assign('/login?next=' + encodeURIComponent(next));
}

async function failure(r) {
  let message = r.statusText || 'HTTP ' + r.status;
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) { /* not JSON */ }
  if (r.status === 401) toLogin();
  return new ApiError(message, r.status);
}

// fetch() with our headers; resolves to the Response when it is 2xx, else throws ApiError.
export async function raw(method, path, body) {
  const json = body !== undefined && !(body instanceof FormData);
  const r = await fetch(path, {
    method,
    headers: headersFor(method, json),
    body: json ? JSON.stringify(body) : body,
    credentials: 'same-origin',
  });
  if (!r.ok) throw await failure(r);
  return r;
}

export async function api(method, path, body) {
  const r = await raw(method, path, body);
  if (r.status === 204) return {};
  const type = r.headers.get('content-type') || '';
  const data = type.includes('json') ? await r.json() : await r.text();
  if (data && data.ok === false) throw new ApiError((data.error && data.error.message) || 'refused', r.status);
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

// A multipart upload with progress (fetch cannot report upload progress): resolves to the parsed JSON.
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('POST', path);
    if (csrf) x.setRequestHeader('X-CSRF-Token', csrf);
    x.responseType = 'json';
    x.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    x.onload = () => {
      const body = x.response || {};
      if (x.status >= 200 && x.status < 300 && body.ok !== false) resolve(body);
      else {
        if (x.status === 401) toLogin();
        reject(new ApiError((body.error && body.error.message) || 'HTTP ' + x.status, x.status));
      }
    };
    x.onerror = () => reject(new ApiError('network error', 0));
    x.send(form);
  });
}

// One EventSource for the whole page; pages subscribe by event type. It reconnects by itself.
const listeners = new Map();
let source = null;
export function on(type, fn) {
  if (!listeners.has(type)) {
    listeners.set(type, new Set());
    if (source) attach(type);
  }
  listeners.get(type).add(fn);
  if (!source) connect();
  return () => listeners.get(type).delete(fn);
}

function attach(type) {
  source.addEventListener(type, (e) => {
    let data;
    try { data = JSON.parse(e.data); } catch (_) { return; }
    for (const fn of listeners.get(type) || []) fn(data);
  });
}

function connect() {
  source = new EventSource('/api/events', { withCredentials: true });
  for (const type of listeners.keys()) attach(type);
  source.addEventListener('open', () => { for (const fn of listeners.get('_open') || []) fn({}); });
  source.addEventListener('error', () => { for (const fn of listeners.get('_error') || []) fn({}); });
}

// A page kept in the back/forward cache must not hold its stream open: browsers allow six connections per
// host over HTTP/1.1, and a stream held by a cached page would leave the next page waiting.
window.addEventListener('pagehide', () => { if (source) { source.close(); source = null; } });
window.addEventListener('pageshow', (e) => { if (e.persisted && listeners.size && !source) connect(); });
