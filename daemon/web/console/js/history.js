// History: search and filters over the records (cursor paging), sessions, a record view with audio synced to
// its segments, inline editing (the recognizer's text kept, revert), delete, export of a selection or a session.
import { get, query, raw } from './api.js';
import { t } from './i18n.js';
import { $, $$, busy, clock, field, h, languageSelect, saveBlob, toast, when } from './util.js';
import { openRecord } from './record.js';
import { loadNames, namesEditor, relabelWho, who } from './speakers.js';

export const EXPORTS = ['txt', 'srt', 'vtt', 'csv', 'json', 'docx'];
const PAGE = 50;
let root, list, view, cursor = null, filters = {}, selected = new Set(), firstShown = false;
export const perf = (window.asrboxPerf = window.asrboxPerf || {});

export function mount(section) {
  root = section;
  const form = h('form', { id: 'hist-form', class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); search(); } },
    h('div', { class: 'field grow' }, h('label', { for: 'hist-q', i18n: 'hist.search' }),
      h('input', { id: 'hist-q', type: 'search', 'data-i18n-ph': 'hist.search_ph' })),
    field('hist.since', h('input', { id: 'hist-since', type: 'date' })),
    field('hist.until', h('input', { id: 'hist-until', type: 'date' })),
    field('hist.source', h('select', { id: 'hist-source' },
      h('option', { value: '', i18n: 'hist.any' }), h('option', { value: 'live', i18n: 'hist.live' }), h('option', { value: 'file', i18n: 'hist.file' }))),
    field('hist.session', h('input', { id: 'hist-session', type: 'text', list: 'hist-sessions', size: 10 })),
    field('hist.language', languageSelect('hist-language')),
    field('hist.speaker', h('input', { id: 'hist-speaker', type: 'text', size: 8, maxlength: 100, 'data-i18n-ph': 'hist.speaker_ph' })),
    h('div', { class: 'field' }, h('span', { class: 'label-space' }), h('button', { type: 'submit', id: 'hist-go', i18n: 'hist.go' })));
  for (const id of ['hist-since', 'hist-until', 'hist-source', 'hist-language']) form.querySelector('#' + id).addEventListener('change', () => search());
  section.append(
    h('h1', { id: 'h-history', i18n: 'nav.history' }),
    h('div', { id: 'hist-listview' },
      form, h('datalist', { id: 'hist-sessions' }),
      h('div', { class: 'row spread' },
        h('p', { id: 'hist-count', class: 'muted', 'aria-live': 'polite' }),
        h('div', { class: 'row' },
          h('label', { class: 'check' }, h('input', { type: 'checkbox', id: 'hist-all', onchange: (e) => selectAll(e.target.checked) }), ' ', h('span', { i18n: 'hist.select_all' })),
          h('label', { for: 'hist-format', class: 'sr', i18n: 'hist.format' }), formatSelect('hist-format'),
          h('button', { type: 'button', id: 'hist-export', class: 'ghost', i18n: 'hist.export_sel', onclick: (e) => exportSelection(e.target) }))),
      h('ol', { id: 'hist-list', class: 'records' }),
      h('div', { class: 'row center' }, h('button', { type: 'button', id: 'hist-more', class: 'ghost', hidden: true, i18n: 'hist.more', onclick: (e) => busy(e.target, () => more()) })),
      h('details', { class: 'card', id: 'hist-sessions-box', ontoggle: (e) => e.target.open && sessions() },
        h('summary', { i18n: 'hist.sessions' }), h('ul', { id: 'hist-session-list', class: 'sessions' }))),
    h('div', { id: 'hist-view', hidden: true }));
  list = $('#hist-list', section);
  view = $('#hist-view', section);
  updateExport();
}

export function formatSelect(id) {
  return h('select', { id }, ...EXPORTS.map((f) => h('option', { value: f, text: f })));
}

export async function show(params) {
  const [kind, id] = params;
  const listView = $('#hist-listview', root);
  if (kind === 'record' && id) { listView.hidden = true; view.hidden = false; await openRecord(view, id); return; }
  if (kind === 'session' && id) { listView.hidden = true; view.hidden = false; await openSession(id); return; }
  view.hidden = true;
  listView.hidden = false;
  if (!firstShown) {
    firstShown = true;
    const t0 = performance.now();
    await search();
    perf.historyFirstRender = performance.now() - t0;
    perf.historyRenderedAt = performance.now(); // since the navigation started
  }
}

export function relabel() { for (const li of $$('li.rec', list)) li.querySelector('.src').textContent = t('hist.' + li.dataset.kind); }

function readFilters() {
  // dates go as they are: the box reads them in its own time zone, `until` inclusive
  return {
    q: $('#hist-q', root).value.trim(),
    since: $('#hist-since', root).value,
    until: $('#hist-until', root).value,
    source: $('#hist-source', root).value,
    session: $('#hist-session', root).value.trim(),
    language: $('#hist-language', root).value,
    speaker: $('#hist-speaker', root).value.trim(),
  };
}

export async function search() {
  const t0 = performance.now();
  filters = readFilters();
  cursor = null;
  selected.clear();
  $('#hist-all', root).checked = false;
  list.textContent = '';
  list.setAttribute('aria-busy', 'true');
  try {
    await more();
  } catch (err) {
    toast(err.message);
  } finally {
    list.removeAttribute('aria-busy');
  }
  perf.historySearch = performance.now() - t0;
  root.dataset.searched = String((Number(root.dataset.searched) || 0) + 1);
}

async function more() {
  const res = await get('/api/records' + query({ ...filters, limit: PAGE, cursor }));
  const frag = document.createDocumentFragment();
  for (const r of res.items || []) frag.append(row(r));
  list.append(frag);
  cursor = res.next_cursor || null;
  $('#hist-more', root).hidden = !cursor;
  const n = list.children.length;
  $('#hist-count', root).textContent = n ? t(cursor ? 'hist.count_more' : 'hist.count', { n }) : t('hist.none');
  updateExport();
}

function marked(text, q) {
  const out = h('span', { class: 'text' });
  const words = q ? q.split(/\s+/).filter(Boolean).map((w) => w.toLowerCase()) : [];
  if (!words.length) { out.textContent = text; return out; }
  const lower = text.toLowerCase();
  let i = 0;
  while (i < text.length) {
    let best = -1, len = 0;
    for (const w of words) {
      const j = lower.indexOf(w, i);
      if (j >= 0 && (best < 0 || j < best)) { best = j; len = w.length; }
    }
    if (best < 0) { out.append(text.slice(i)); break; }
    out.append(text.slice(i, best), h('mark', { text: text.slice(best, best + len) }));
    i = best + len;
  }
  return out;
}

function row(r) {
  const box = h('input', { type: 'checkbox', 'aria-label': t('hist.select') + ' ' + when(r.created_at || r.started_at), onchange: (e) => { if (e.target.checked) selected.add(r.id); else selected.delete(r.id); updateExport(); } });
  return h('li', { class: 'rec', dataset: { id: r.id, kind: r.kind || 'live' } }, box,
    h('a', { href: '#/history/record/' + encodeURIComponent(r.id), class: 'reclink' },
      h('span', { class: 'meta' },
        h('time', { text: when(r.started_at || r.created_at) }),
        h('span', { class: 'src', text: t('hist.' + (r.kind || 'live')) }),
        r.kind === 'file' && r.source ? h('span', { class: 'fname', text: r.source }) : null,
        r.language ? h('span', { class: 'tag', text: r.language }) : null,
        r.duration_s ? h('span', { class: 'muted', text: clock(r.duration_s) }) : null,
        r.edited_at ? h('span', { class: 'tag', i18n: 'hist.edited' }) : null),
      marked(r.text || (r.error ? '⚠ ' + r.error : (r.status === 'pending' ? '…' : '')), filters.q)));
}

function selectAll(on) {
  for (const li of $$('li.rec', list)) {
    const c = li.querySelector('input[type=checkbox]');
    c.checked = on;
    if (on) selected.add(li.dataset.id); else selected.delete(li.dataset.id);
  }
  updateExport();
}

function updateExport() {
  const b = $('#hist-export', root);
  b.disabled = !selected.size;
  b.textContent = t('hist.export_sel') + (selected.size ? ` (${selected.size})` : '');
}

function fileName(r, fallback) {
  const cd = r.headers.get('content-disposition') || '';
  const m = /filename\*=UTF-8''([^;]+)|filename="?([^";]+)"?/i.exec(cd);
  return m ? decodeURIComponent(m[1] || m[2]) : fallback;
}

export async function downloadPost(path, body, fallback) {
  const r = await raw('POST', path, body);
  saveBlob(await r.blob(), fileName(r, fallback));
}

async function exportSelection(button) {
  const format = $('#hist-format', root).value;
  await busy(button, () => downloadPost('/api/records/export', { ids: Array.from(selected), format }, 'asrbox.' + format));
}

async function sessions() {
  const ul = $('#hist-session-list', root);
  const dl = $('#hist-sessions', root);
  const res = await get('/api/sessions' + query({ limit: 50 })).catch((e) => { toast(e.message); return {}; });
  ul.textContent = '';
  dl.textContent = '';
  for (const s of res.items || res.sessions || []) {
    ul.append(h('li', {}, h('a', { href: '#/history/session/' + encodeURIComponent(s.id) },
      h('strong', { text: s.name || String(s.id).slice(0, 8) }), ' ', h('span', { class: 'muted', text: when(s.started_at) }))));
    dl.append(h('option', { value: s.id, label: s.name || '' }));
  }
  if (!ul.children.length) ul.append(h('li', { class: 'muted', i18n: 'hist.none' }));
}

async function openSession(id) {
  view.textContent = '';
  const s = await get('/api/sessions/' + encodeURIComponent(id)).catch((e) => { toast(e.message); return null; });
  if (!s) return;
  const info = s.session || s;
  const recs = await get('/api/records' + query({ session: info.id || id, limit: 200 }));
  const sbase = '/api/sessions/' + encodeURIComponent(info.id || id);
  const base = sbase + '/export?format=';
  const names = await loadNames(sbase).catch(() => new Map());
  view.append(
    h('p', {}, h('a', { href: '#/history', i18n: 'hist.back' })),
    h('h2', { text: (info.name || t('hist.session')) + ' · ' + when(info.started_at) }),
    h('p', { class: 'muted', text: info.ended_at ? t('hist.ended', { at: when(info.ended_at) }) : t('hist.running') }),
    h('div', { class: 'row' }, h('span', { i18n: 'hist.export_session' }),
      ...EXPORTS.map((f) => h('a', { class: 'button small', href: base + f, download: '', text: f }))),
    h('ol', { class: 'records' }, ...(recs.items || []).map((r) => h('li', { class: 'rec' },
      h('a', { href: '#/history/record/' + encodeURIComponent(r.id), class: 'reclink' },
        h('span', { class: 'meta' }, h('time', { text: when(r.started_at || r.created_at) })),
        h('span', { class: 'text' }, who(r.speaker, names.get(r.speaker)), r.text || ''))))),
    names.size ? h('section', { class: 'card speakers-card' }, h('h3', { i18n: 'spk.title' }),
      h('p', { class: 'muted small', i18n: 'spk.session_list_hint' }),
      namesEditor('ses', sbase, names, (label, name) => relabelWho(view, label, name))) : null);
}
