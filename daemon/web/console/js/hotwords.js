// Hotwords: the box list (in force for every session at once): add, remove, import and export a text file.
import { get, api } from './api.js';
import { t } from './i18n.js';
import { $, busy, h, saveBlob, toast } from './util.js';

let root, terms = [], layers = {};

export function mount(section) {
  root = section;
  section.append(
    h('h1', { id: 'h-hotwords', i18n: 'nav.hotwords' }),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' },
        h('h2', { i18n: 'hw.box' }),
        h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); addTerms(e.submitter); } },
          h('label', { for: 'hw-new', class: 'sr', i18n: 'hw.new' }),
          h('input', { id: 'hw-new', type: 'text', maxlength: 100, 'data-i18n-ph': 'hw.new_ph', class: 'grow' }),
          h('button', { type: 'submit', id: 'hw-add', i18n: 'hw.add' })),
        h('ul', { id: 'hw-list', class: 'chips removable' }),
        h('div', { class: 'row' },
          h('input', { type: 'file', id: 'hw-file', accept: '.txt,text/plain', class: 'sr', onchange: (e) => importFile(e.target) }),
          h('label', { for: 'hw-file', class: 'button ghost', tabindex: 0, i18n: 'hw.import', onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('#hw-file', root).click(); } } }),
          h('button', { type: 'button', class: 'ghost', i18n: 'hw.export', onclick: exportFile }))),
      h('div', { class: 'card' },
        h('h2', { i18n: 'hw.layers' }),
        h('dl', { class: 'layers' },
          h('dt', { i18n: 'hw.layer_bias' }), h('dd', { i18n: 'hw.layer_bias_text' }),
          h('dt', { i18n: 'hw.layer_fix' }), h('dd', { i18n: 'hw.layer_fix_text' }),
          h('dt', { i18n: 'hw.layer_scope' }), h('dd', { i18n: 'hw.layer_scope_text' })),
        h('h3', { i18n: 'hw.in_force' }),
        h('dl', { id: 'hw-layers', class: 'kv' }))));
}

export async function show() {
  try {
    const res = await get('/api/hotwords');
    terms = res.terms || [];
    layers = res.layers || {};
  } catch (err) { toast(err.message); }
  render();
}

export function relabel() { render(); }

function render() {
  const ul = $('#hw-list', root);
  ul.textContent = '';
  for (const w of terms) {
    ul.append(h('li', {}, h('span', { text: w }),
      h('button', { type: 'button', class: 'x', 'aria-label': t('remove') + ' ' + w, text: '×', onclick: (e) => removeTerm(e.target, w) })));
  }
  if (!terms.length) ul.append(h('li', { class: 'muted', i18n: 'live.no_hotwords' }));
  const dl = $('#hw-layers', root);
  dl.textContent = '';
  for (const [name, v] of Object.entries(layers)) {
    const shown = Array.isArray(v) ? v.join(', ') : (v && typeof v === 'object' ? (v.terms ? v.terms.join(', ') : JSON.stringify(v)) : String(v));
    dl.append(h('dt', { text: name }), h('dd', { text: shown || '—' }));
  }
}

async function put(next) {
  const res = await api('PUT', '/api/hotwords', { terms: next });
  terms = res.terms || next;
  if (res.layers) layers = res.layers;
  render();
}

function split(text) {
  return text.split(/[\n,，、;；]+/).map((w) => w.normalize('NFC').trim()).filter(Boolean);
}

async function addTerms(button) {
  const input = $('#hw-new', root);
  const add = split(input.value).filter((w) => !terms.includes(w));
  if (!add.length) return;
  await busy(button, async () => { await put([...terms, ...add]); input.value = ''; input.focus(); });
}

async function removeTerm(button, w) {
  await busy(button, () => put(terms.filter((x) => x !== w)));
}

async function importFile(input) {
  const f = input.files[0];
  input.value = '';
  if (!f) return;
  const add = split(await f.text()).filter((w) => !terms.includes(w));
  await busy(null, async () => { await put([...terms, ...add]); toast(t('hw.imported', { n: add.length }), 'ok'); });
}

function exportFile() {
  saveBlob(new Blob([terms.join('\n') + '\n'], { type: 'text/plain;charset=utf-8' }), 'hotwords.txt');
}
