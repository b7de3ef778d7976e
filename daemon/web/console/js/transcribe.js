// Transcribe: drop many files, pick options, upload into one held job (one request per file, with progress),
// then a queue of the server's jobs (it survives reloads and restarts): per-file progress, cancel, downloads,
// and the speakers each file was found to have when the job asked for them.
import { api, get, on, post, query, upload } from './api.js';
import { t } from './i18n.js';
import { $, bytes, busy, clock, confirmDialog, debounce, field, h, languageSelect, when } from './util.js';
import { loadNames, noModels, who } from './speakers.js';

const FORMATS = ['txt', 'srt', 'vtt', 'json', 'csv'];
const ACTIVE = new Set(['held', 'queued', 'running', 'pending', 'uploading']);
const DETAILED = 5;
let root, picked = [], jobs = new Map(), pollTimer = 0, visible = false;
const fileSpeakers = new Map(); // record id -> Map label -> name (a done file's labels do not change)

export function mount(section) {
  root = section;
  const input = h('input', { id: 'tr-files', type: 'file', multiple: true, accept: 'audio/*,video/*,.wav,.mp3,.m4a,.flac,.ogg,.opus,.mp4,.mkv,.webm,.mov', onchange: (e) => { add(e.target.files); e.target.value = ''; } });
  const drop = h('label', { class: 'drop', for: 'tr-files', id: 'tr-drop' },
    h('strong', { i18n: 'tr.drop' }), h('span', { class: 'muted', i18n: 'tr.drop_hint' }));
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); add(e.dataTransfer.files); });
  const formats = h('fieldset', { class: 'formats' }, h('legend', { i18n: 'tr.formats' }),
    ...FORMATS.map((f) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', name: 'fmt', value: f, checked: chosenFormats().includes(f), onchange: saveFormats }), ' ' + f)));
  section.append(
    h('h1', { id: 'h-transcribe', i18n: 'nav.transcribe' }),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, input, drop, h('ul', { id: 'tr-picked', class: 'picked' }),
        h('div', { class: 'row' },
          h('button', { type: 'button', id: 'tr-upload', i18n: 'tr.upload', onclick: (e) => send(e.target) }),
          h('button', { type: 'button', class: 'ghost', i18n: 'tr.clear', onclick: () => { picked = []; renderPicked(); } }))),
      h('div', { class: 'card' },
        h('h2', { i18n: 'tr.options' }),
        field('tr.name', h('input', { id: 'tr-name', type: 'text', maxlength: 200 })),
        field('tr.language', languageSelect('tr-language')),
        field('tr.hotwords', h('textarea', { id: 'tr-hotwords', rows: 3, 'data-i18n-ph': 'tr.hotwords_ph' })),
        h('label', { class: 'check' }, h('input', { type: 'checkbox', id: 'tr-itn', checked: true }), ' ', h('span', { i18n: 'tr.itn' })),
        field('tr.speakers', speakersSelect(), 'tr.speakers_hint'),
        formats)),
    h('div', { class: 'row spread' }, h('h2', { i18n: 'tr.queue' }),
      h('button', { type: 'button', class: 'ghost small', i18n: 'refresh', onclick: () => refresh() })),
    h('div', { id: 'tr-jobs' }),
  );
  renderPicked();
  on('job', (ev) => {
    if (ev && ev.status === 'deleted') { forget(ev.job_id); return; }
    jobEvent(ev);
  });
}

const jobEvent = debounce((ev) => (ev && ev.job_id ? refreshJob(ev.job_id) : refresh()), 150);

function forget(id) {
  jobs.delete(id);
  const card = root.querySelector(`.job[data-id="${CSS.escape(id)}"]`);
  if (card) card.remove();
}

export async function show() {
  visible = true;
  await refresh();
}

export function hide() { visible = false; clearTimeout(pollTimer); }

export function relabel() {
  for (const o of root.querySelectorAll('#tr-speakers option[data-n]')) o.textContent = t('tr.speakers_n', { n: o.dataset.n });
  renderPicked();
  for (const j of jobs.values()) renderJob(j);
}

// off / auto / exactly 2..8 (remembered in the browser)
function speakersSelect() {
  const sel = h('select', { id: 'tr-speakers', onchange: (e) => localStorage.setItem('asrbox.speakers', e.target.value) },
    h('option', { value: '', i18n: 'tr.speakers_off' }), h('option', { value: 'auto', i18n: 'tr.speakers_auto' }),
    ...[2, 3, 4, 5, 6, 7, 8].map((n) => h('option', { value: String(n), dataset: { n }, text: t('tr.speakers_n', { n }) })));
  sel.value = localStorage.getItem('asrbox.speakers') || '';
  if (sel.selectedIndex < 0) sel.value = '';
  return sel;
}

function chosenFormats() {
  try { return JSON.parse(localStorage.getItem('asrbox.formats')) || ['txt', 'srt']; } catch (_) { return ['txt', 'srt']; }
}

function saveFormats() {
  const f = Array.from(root.querySelectorAll('input[name=fmt]:checked')).map((x) => x.value);
  localStorage.setItem('asrbox.formats', JSON.stringify(f));
  for (const j of jobs.values()) renderJob(j);
}

function add(files) {
  for (const f of files) picked.push({ file: f, progress: 0, error: null });
  renderPicked();
}

function renderPicked() {
  const ul = $('#tr-picked', root);
  ul.textContent = '';
  picked.forEach((p, i) => ul.append(h('li', {},
    h('span', { class: 'name', text: p.file.name }), h('span', { class: 'muted', text: bytes(p.file.size) }),
    h('progress', { max: 1, value: p.progress, 'aria-label': t('tr.uploading') + ' ' + p.file.name }),
    p.error ? h('span', { class: 'err', text: p.error }) : null,
    h('button', { type: 'button', class: 'ghost small', 'aria-label': t('remove') + ' ' + p.file.name, text: '×', onclick: () => { picked.splice(i, 1); renderPicked(); } }))));
  $('#tr-upload', root).disabled = !picked.length;
}

function fields(form) {
  const name = $('#tr-name', root).value.trim();
  if (name) form.append('name', name);
  const lang = $('#tr-language', root).value;
  if (lang) form.append('language', lang);
  const hw = $('#tr-hotwords', root).value.trim();
  if (hw) form.append('hotwords', hw);
  form.append('itn', $('#tr-itn', root).checked ? 'true' : 'false');
  const speakers = $('#tr-speakers', root).value;
  if (speakers) form.append('speakers', speakers);
}

async function send(button) {
  const batch = picked.slice();
  if (!batch.length) return;
  await busy(button, async () => {
    let job = null;
    for (const p of batch) {
      const form = new FormData();
      if (!job) { fields(form); form.append('hold', 'true'); }
      form.append('file', p.file, p.file.name);
      const path = job ? '/api/jobs/' + encodeURIComponent(job.id) + '/files' : '/api/jobs';
      try {
        const res = await upload(path, form, (x) => { p.progress = x; renderPicked(); });
        if (!job) job = res.job;
        p.progress = 1;
        picked.splice(picked.indexOf(p), 1);
      } catch (err) {
        p.error = err.message;
        if (!job && noModels(err)) throw new Error(t('spk.no_models'));
        if (!job) throw err;
      }
      renderPicked();
    }
    if (job) {
      await post('/api/jobs/' + encodeURIComponent(job.id) + '/start');
      await refreshJob(job.id);
    }
  });
}

async function refresh() {
  fileSpeakers.clear(); // names may have been given in History meanwhile
  try {
    const res = await get('/api/jobs' + query({ limit: 20 }));
    const items = res.items || res.jobs || [];
    // the list has counts only: the files of open jobs and of the newest few come from each job's own view
    const detailed = await Promise.all(items.map((j, i) => (ACTIVE.has(j.status) || i < DETAILED
      ? get('/api/jobs/' + encodeURIComponent(j.id)).then((x) => x.job || x).catch(() => j) : j)));
    jobs = new Map(detailed.map((j) => [j.id, j]));
    const box = $('#tr-jobs', root);
    box.textContent = '';
    if (!items.length) box.append(h('p', { class: 'muted', i18n: 'tr.no_jobs' }));
    for (const j of detailed.slice().reverse()) renderJob(j);
  } catch (_) { /* shown by the toast of the call that failed */ }
  schedule();
}

async function refreshJob(id) {
  try {
    const res = await get('/api/jobs/' + encodeURIComponent(id));
    const j = res.job || res;
    const first = !jobs.has(j.id);
    jobs.set(j.id, j);
    if (first) { await refresh(); return; }
    renderJob(j);
  } catch (_) { /* deleted meanwhile */ }
  schedule();
}

// SSE carries progress; a slow poll covers a dropped connection while anything still runs.
function schedule() {
  clearTimeout(pollTimer);
  if (!visible) return;
  const running = Array.from(jobs.values()).filter((j) => ACTIVE.has(j.status));
  if (running.length) pollTimer = setTimeout(() => Promise.all(running.map((j) => refreshJob(j.id))), 2000);
}

function jobCard(id) {
  let card = root.querySelector(`.job[data-id="${CSS.escape(id)}"]`);
  if (!card) {
    card = h('article', { class: 'card job', dataset: { id } });
    const box = $('#tr-jobs', root);
    const empty = box.querySelector('p.muted');
    if (empty) empty.remove();
    box.prepend(card);
  }
  return card;
}

function renderJob(j) {
  const card = jobCard(j.id);
  card.dataset.status = j.status;
  card.textContent = '';
  const files = j.files || [];
  const total = j.files_total ?? files.length;
  const done = j.files_done ?? files.filter((f) => f.status === 'done').length;
  const base = '/api/jobs/' + encodeURIComponent(j.id);
  card.append(
    h('div', { class: 'row spread' },
      h('h3', { text: j.name || t('tr.job') + ' ' + String(j.id).slice(0, 8) }),
      h('span', { class: 'badge', dataset: { state: j.status }, text: t('job.' + j.status) })),
    h('p', { class: 'muted', text: when(j.created_at) + ' · ' + t('tr.files_done', { done, total }) }),
    h('div', { class: 'row' },
      ACTIVE.has(j.status) ? h('button', { type: 'button', class: 'ghost small', i18n: 'cancel', onclick: (e) => busy(e.target, async () => { await post(base + '/cancel'); await refreshJob(j.id); }) }) : null,
      h('a', { class: 'button small', href: base + '/results.zip', download: '', i18n: 'tr.zip' }),
      h('a', { class: 'button small', href: base + '/results.csv', download: '', i18n: 'tr.csv' }),
      ACTIVE.has(j.status) ? null : h('button', { type: 'button', class: 'ghost small danger', i18n: 'delete', onclick: (e) => remove(e.target, j) })),
    files.length ? fileTable(j, base) : null);
}

function fileTable(j, base) {
  const fmts = chosenFormats();
  const body = h('tbody');
  for (const f of j.files || []) {
    body.append(h('tr', { dataset: { idx: f.idx, status: f.status } },
      h('td', { class: 'name', text: f.name }),
      h('td', {}, h('progress', { max: 1, value: f.status === 'done' ? 1 : Number(f.progress || 0), 'aria-label': f.name }),
        ' ', h('span', { class: 'fstatus', text: t('job.' + f.status) })),
      h('td', { class: 'muted', text: f.duration_s ? clock(f.duration_s) : bytes(f.bytes) }),
      h('td', {}, f.status === 'done'
        ? [...fmts.map((x) => h('a', { href: `${base}/files/${f.idx}/result?format=${x}`, download: '', class: 'fmt', text: x })),
          askedSpeakers(j) && f.record_id ? speakersOf(f.record_id) : null]
        : (f.error ? h('span', { class: 'err', text: f.error }) : ''))));
  }
  return h('table', { class: 'files' },
    h('thead', {}, h('tr', {}, ...['tr.file', 'tr.progress', 'tr.length', 'tr.results'].map((k) => h('th', { scope: 'col', i18n: k })))),
    body);
}

function askedSpeakers(j) {
  const o = j.options || {};
  return Boolean(o.speakers || o.min_speakers || o.max_speakers);
}

// A done file's speakers (S1 S2, or their names) and a link to its record, where they are named; fetched once
function speakersOf(recordId) {
  const el = h('span', { class: 'file-speakers', dataset: { record: recordId } });
  if (!fileSpeakers.has(recordId)) {
    fileSpeakers.set(recordId, loadNames('/api/records/' + encodeURIComponent(recordId)).catch(() => null));
  }
  fileSpeakers.get(recordId).then((names) => {
    if (!names) return;
    el.replaceChildren(...(names.size
      ? Array.from(names, ([label, name]) => who(label, name, ''))
      : [h('span', { class: 'muted', i18n: 'spk.none_found' })]),
    h('a', { href: '#/history/record/' + encodeURIComponent(recordId), i18n: names.size ? 'spk.open_record' : 'tr.open_record' }));
  });
  return el;
}

async function remove(button, j) {
  if (!(await confirmDialog(t('tr.confirm_delete', { name: j.name || j.id })))) return;
  await busy(button, async () => {
    await api('DELETE', '/api/jobs/' + encodeURIComponent(j.id));
    jobs.delete(j.id);
    await refresh();
  });
}
