// One record: the audio player synced to the segments (click a line to play from there; the playing line is
// highlighted), inline editing that keeps the recognizer's text, revert, the edit log, delete, export; speakers
// coloured by label with their names, renamed in place (a file's names are its own, a live utterance's its session's).
import { api, get, post } from './api.js';
import { t } from './i18n.js';
import { busy, clock, confirmDialog, h, toast, when } from './util.js';
import { downloadPost, formatSelect } from './history.js';
import { loadNames, namesEditor, relabelWho, speakerClass, who } from './speakers.js';

let rec = null, box = null, audio = null, editing = false, names = new Map();

export async function openRecord(view, id) {
  box = view;
  editing = false;
  try {
    const res = await get('/api/records/' + encodeURIComponent(id));
    rec = res.record || res;
  } catch (err) {
    view.textContent = '';
    view.append(h('p', {}, h('a', { href: '#/history', i18n: 'hist.back' })), h('p', { class: 'err', text: err.message }));
    return;
  }
  names = await speakerNames();
  render();
}

// Where the names of this record's labels live: a live utterance's in its session, a file's in the record
function namesBase() {
  return rec.kind === 'live' && rec.session_id
    ? '/api/sessions/' + encodeURIComponent(rec.session_id) : '/api/records/' + encodeURIComponent(rec.id);
}

function labels() {
  const found = new Set((rec.segments || []).map((s) => s.speaker).filter(Boolean));
  if (rec.speaker) found.add(rec.speaker);
  return found;
}

async function speakerNames() {
  const mine = labels();
  if (!mine.size) return new Map();
  let all = new Map();
  try { all = await loadNames(namesBase()); } catch (_) { /* labels without names */ }
  return new Map(Array.from(mine, (l) => [l, all.get(l) || null]));
}

function speakersCard() {
  if (!names.size || editing) return null; // (a rename would redraw the lines being edited)
  const live = rec.kind === 'live' && rec.session_id;
  return h('section', { class: 'card speakers-card', 'aria-labelledby': 'rec-speakers-h' },
    h('h3', { id: 'rec-speakers-h', i18n: 'spk.title' }),
    h('p', { class: 'muted small', i18n: live ? 'spk.session_hint' : 'spk.record_hint' }),
    namesEditor('rec', namesBase(), names, renamed));
}

// a rename shows at once: the lines (and their spoken labels) and the tag of a live utterance
function renamed(label, name) {
  box.querySelector('#rec-segments').replaceChildren(...segments().map(segment));
  relabelWho(box.querySelector('p.meta'), label, name);
  if (audio) follow();
}

function segments() {
  if (rec.segments && rec.segments.length) return rec.segments;
  return [{ start: 0, end: rec.duration_s || 0, text: rec.text || '' }];
}

function joiner() {
  return ['zh', 'yue', 'ja'].includes(rec.language) ? '' : ' ';
}

function render() {
  box.textContent = '';
  const src = '/api/records/' + encodeURIComponent(rec.id) + '/audio';
  audio = rec.has_audio ? h('audio', { id: 'rec-audio', controls: true, preload: 'metadata', src }) : null;
  if (audio) audio.addEventListener('timeupdate', follow);
  box.append(
    h('p', {}, h('a', { href: '#/history', i18n: 'hist.back' })),
    h('h2', { text: when(rec.started_at || rec.created_at) }),
    h('p', { class: 'meta' },
      h('span', { class: 'src', text: t('hist.' + (rec.kind || 'live')) }),
      rec.kind === 'file' && rec.source ? h('span', { class: 'fname', text: rec.source }) : null,
      rec.language ? h('span', { class: 'tag', text: rec.language }) : null,
      rec.duration_s ? h('span', { class: 'muted', text: clock(rec.duration_s) }) : null,
      rec.session_id ? h('a', { href: '#/history/session/' + encodeURIComponent(rec.session_id), i18n: 'hist.session' }) : null,
      rec.speaker ? h('span', { class: 'tag ' + speakerClass(rec.speaker), dataset: { speaker: rec.speaker }, text: names.get(rec.speaker) || rec.speaker }) : null,
      rec.edited_at ? h('span', { class: 'tag', text: t('hist.edited_at', { at: when(rec.edited_at) }) }) : null),
    audio || h('p', { class: 'muted', i18n: 'hist.no_audio' }),
    h('ol', { id: 'rec-segments', class: 'segments' + (editing ? ' editing' : '') }, ...segments().map(segment)),
    actions(),
    speakersCard(),
    h('details', { class: 'raw' }, h('summary', { i18n: 'hist.raw' }), h('p', { id: 'rec-raw', text: rec.raw_text || '' })),
    h('details', { class: 'raw', ontoggle: (e) => e.target.open && edits(e.target) }, h('summary', { i18n: 'hist.edits' }), h('ul', { class: 'edits' })));
}

function segment(s, i) {
  const text = editing
    ? h('textarea', { class: 'seg-edit', rows: 2, dataset: { i }, 'aria-label': t('hist.segment') + ' ' + clock(s.start) }, s.text)
    : h('span', { class: 'seg-text', text: s.text });
  if (editing) text.value = s.text;
  const label = h('span', { class: 'seg-time', text: clock(s.start) });
  const by = s.speaker || (rec.kind === 'live' ? rec.speaker : null); // a live utterance: one speaker
  const speaker = who(by, names.get(by));
  if (editing) return h('li', { class: 'seg', dataset: { start: s.start, end: s.end } }, label, speaker, text);
  return h('li', { class: 'seg', dataset: { start: s.start, end: s.end } },
    h('button', { type: 'button', class: 'seg-play', onclick: () => seek(s.start), 'aria-label': t('hist.play_from', { at: clock(s.start) }) + ': ' + (speaker ? speaker.textContent : '') + s.text },
      label, speaker, text));
}

function actions() {
  const base = '/api/records/' + encodeURIComponent(rec.id);
  if (editing) {
    return h('div', { class: 'row' },
      h('button', { type: 'button', id: 'rec-save', i18n: 'save', onclick: (e) => save(e.target) }),
      h('button', { type: 'button', class: 'ghost', i18n: 'cancel', onclick: () => { editing = false; render(); } }));
  }
  return h('div', { class: 'row' },
    h('button', { type: 'button', id: 'rec-edit', i18n: 'edit', onclick: () => { editing = true; render(); const f = box.querySelector('textarea'); if (f) f.focus(); } }),
    rec.edited_at ? h('button', { type: 'button', id: 'rec-revert', class: 'ghost', i18n: 'hist.revert', onclick: (e) => revert(e.target, base) }) : null,
    h('label', { for: 'rec-format', class: 'sr', i18n: 'hist.format' }), formatSelect('rec-format'),
    h('button', { type: 'button', class: 'ghost', i18n: 'hist.export', onclick: (e) => busy(e.target, () => downloadPost('/api/records/export', { ids: [rec.id], format: box.querySelector('#rec-format').value }, 'record.' + box.querySelector('#rec-format').value)) }),
    h('button', { type: 'button', id: 'rec-delete', class: 'ghost danger', i18n: 'delete', onclick: (e) => remove(e.target, base) }));
}

function seek(at) {
  if (!audio) return;
  audio.currentTime = Number(at) || 0;
  audio.play().catch(() => { /* autoplay refused: the position is set anyway */ });
  follow();
}

function follow() {
  const now = audio.currentTime;
  for (const li of box.querySelectorAll('li.seg')) {
    const on = now >= Number(li.dataset.start) && now < Number(li.dataset.end);
    li.classList.toggle('playing', on);
    if (on) li.setAttribute('aria-current', 'true'); else li.removeAttribute('aria-current');
  }
}

async function save(button) {
  const segs = segments().map((s, i) => ({ ...s, text: box.querySelector(`textarea[data-i="${i}"]`).value.trim() }));
  const body = { text: segs.map((s) => s.text).filter(Boolean).join(joiner()) };
  if (rec.segments && rec.segments.length) body.segments = segs;
  await busy(button, async () => {
    const res = await api('PATCH', '/api/records/' + encodeURIComponent(rec.id), body);
    rec = res.record || (await get('/api/records/' + encodeURIComponent(rec.id)));
    rec = rec.record || rec;
    editing = false;
    render();
    toast(t('hist.saved'), 'ok');
  });
}

async function revert(button, base) {
  if (!(await confirmDialog(t('hist.confirm_revert')))) return;
  await busy(button, async () => {
    await post(base + '/revert');
    const res = await get(base);
    rec = res.record || res;
    render();
  });
}

async function remove(button, base) {
  if (!(await confirmDialog(t('hist.confirm_delete')))) return;
  await busy(button, async () => {
    await api('DELETE', base);
    location.hash = '#/history';
    const li = document.querySelector(`li.rec[data-id="${CSS.escape(rec.id)}"]`);
    if (li) li.remove();
  });
}

async function edits(details) {
  const ul = details.querySelector('ul');
  ul.textContent = '';
  try {
    const res = await get('/api/records/' + encodeURIComponent(rec.id) + '/edits');
    for (const e of res.items || res.edits || []) ul.append(h('li', {}, h('time', { text: when(e.edited_at || e.created_at) }), ' ', h('span', { text: e.new_text || '' })));
    if (!ul.children.length) ul.append(h('li', { class: 'muted', i18n: 'hist.no_edits' }));
  } catch (err) { ul.append(h('li', { class: 'err', text: err.message })); }
}
