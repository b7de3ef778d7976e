// Status: engine, model, device, disk and retention, MQTT, backlog, diagnostics, version, settings in force.
import { get } from './api.js';
import { t } from './i18n.js';
import { $, h, toast } from './util.js';

let root;

export function mount(section) {
  root = section;
  section.append(
    h('div', { class: 'row spread' }, h('h1', { id: 'h-status', i18n: 'nav.status' }),
      h('button', { type: 'button', class: 'ghost small', i18n: 'refresh', onclick: () => show() })),
    h('div', { id: 'st-summary', class: 'tiles' }),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('h2', { i18n: 'st.details' }), h('div', { id: 'st-status' })),
      h('div', { class: 'card' }, h('h2', { i18n: 'st.diagnostics' }), h('div', { id: 'st-diag' }))),
    h('details', { class: 'card' }, h('summary', { i18n: 'st.settings' }), h('div', { id: 'st-settings' })));
}

export async function show() {
  try {
    const s = await get('/api/status');
    const { settings, ...rest } = s;
    delete rest.ok;
    tiles(rest);
    fill($('#st-status', root), rest);
    fill($('#st-settings', root), settings || {});
  } catch (err) { toast(err.message); }
  try {
    const d = await get('/api/diagnostics');
    delete d.ok;
    fill($('#st-diag', root), d);
  } catch (_) { /* optional */ }
}

function pick(o, ...paths) {
  for (const p of paths) {
    let v = o;
    for (const k of p.split('.')) v = v && typeof v === 'object' ? v[k] : undefined;
    if (v !== undefined && v !== null && typeof v !== 'object') return v;
  }
  return undefined;
}

function tiles(s) {
  const box = $('#st-summary', root);
  box.textContent = '';
  const items = [
    ['st.version', pick(s, 'version')],
    ['st.engine', pick(s, 'engine.name', 'engine.engine', 'engine')],
    ['st.model', pick(s, 'model.name', 'engine.model', 'model')],
    ['st.device', pick(s, 'device', 'engine.device')],
    ['st.mqtt', pick(s, 'mqtt.connected', 'mqtt_connected')],
    ['st.backlog', pick(s, 'backlog', 'state.backlog')],
    ['st.disk_free', pick(s, 'disk.free_mb', 'disk.free', 'disk_free_mb')],
  ];
  for (const [k, v] of items) {
    if (v === undefined) continue;
    const shown = typeof v === 'boolean' ? t(v ? 'yes' : 'no') : String(v);
    box.append(h('div', { class: 'tile', dataset: { key: k } }, h('span', { class: 'muted', i18n: k }), h('strong', { text: shown })));
  }
}

// Any JSON as nested definition lists (the server decides what there is to show).
function fill(el, value) {
  el.textContent = '';
  el.append(tree(value));
}

function tree(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted', text: '—' });
  if (Array.isArray(v)) {
    if (v.every((x) => x === null || typeof x !== 'object')) return h('span', { text: v.join(', ') || '—' });
    return h('ol', { class: 'tree' }, ...v.map((x) => h('li', {}, tree(x))));
  }
  if (typeof v === 'object') {
    const dl = h('dl', { class: 'kv' });
    for (const [k, x] of Object.entries(v)) dl.append(h('dt', { text: k }), h('dd', {}, tree(x)));
    return dl;
  }
  if (typeof v === 'boolean') return h('span', { text: t(v ? 'yes' : 'no') });
  return h('span', { text: String(v) });
}
