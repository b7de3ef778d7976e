// Live: state, listening on/off, a named session, captions (partials grey, finals solid, speakers coloured by
// label with their names), naming the session's speakers, mic level, hotwords.
import { get, on, post } from './api.js';
import { t } from './i18n.js';
import { $, busy, field, h, languageSelect } from './util.js';
import { showState } from './app.js';
import { loadNames, namesEditor, relabelWho, who } from './speakers.js';

const MAX_LINES = 300;
let root, lines, partials = new Map(), state = {};
let speakers = { session: null, names: new Map() }; // the current session's labels and their names

export function mount(section) {
  root = section;
  const name = h('input', { id: 'live-session-name', type: 'text', maxlength: 200, 'data-i18n-ph': 'live.session_name_ph' });
  section.append(
    h('h1', { id: 'h-live', i18n: 'nav.live' }),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' },
        h('h2', { i18n: 'live.control' }),
        h('p', {}, h('span', { i18n: 'live.state' }), ': ', h('strong', { id: 'live-state', dataset: { state: '' } })),
        h('div', { class: 'row' },
          h('button', { type: 'button', id: 'live-listen-on', i18n: 'live.listen_on', onclick: (e) => listening(e.target, true) }),
          h('button', { type: 'button', id: 'live-listen-off', class: 'ghost', i18n: 'live.listen_off', onclick: (e) => listening(e.target, false) })),
        h('h3', { i18n: 'live.session' }),
        h('p', { id: 'live-session-info', class: 'muted' }),
        field('live.session_name', name),
        field('live.language', languageSelect('live-language')),
        h('div', { class: 'row' },
          h('button', { type: 'button', id: 'live-session-start', i18n: 'live.session_start', onclick: (e) => startSession(e.target) }),
          h('button', { type: 'button', id: 'live-session-stop', class: 'ghost', i18n: 'live.session_stop', onclick: (e) => stopSession(e.target) }))),
      h('div', { class: 'card' },
        h('h2', { i18n: 'live.level' }),
        h('meter', { id: 'live-meter', min: -70, max: 0, low: -50, high: -12, optimum: -25, value: -70, 'aria-labelledby': 'live-level-text' }),
        h('p', { id: 'live-level-text', class: 'muted', i18n: 'live.level_none' }),
        h('h2', { i18n: 'live.hotwords' }),
        h('ul', { id: 'live-hotwords', class: 'chips' }),
        h('p', {}, h('a', { href: '#/hotwords', i18n: 'live.edit_hotwords' })))),
    h('div', { class: 'card' },
      h('div', { class: 'row spread' },
        h('h2', { i18n: 'live.captions' }),
        h('button', { type: 'button', class: 'ghost small', i18n: 'live.clear', onclick: () => { lines.textContent = ''; partials.clear(); } })),
      h('div', { id: 'live-lines', class: 'captions', 'aria-live': 'polite', 'aria-relevant': 'additions' })),
    h('div', { class: 'card', id: 'live-speakers-card' },
      h('h2', { i18n: 'spk.title' }),
      h('p', { id: 'live-speakers-note', class: 'muted small', i18n: 'spk.live_no_session' }),
      h('div', { id: 'live-speakers-box' })),
  );
  lines = $('#live-lines', section);
  on('state', render);
  on('partial', partial);
  on('final', final);
  on('level', level);
  on('session', () => refresh());
}

// The current session's speakers (labels heard so far, their names): reloaded when the session changes
async function loadSpeakers(force = false) {
  const sid = state.session_id || null;
  if (!force && sid === speakers.session) return;
  speakers = { session: sid, names: new Map() };
  if (sid) {
    try { speakers.names = await loadNames('/api/sessions/' + encodeURIComponent(sid)); } catch (_) { /* none yet */ }
  }
  renderSpeakers();
}

function renderSpeakers() {
  const boxEl = $('#live-speakers-box', root);
  $('#live-speakers-note', root).dataset.i18n = speakers.session ? 'spk.live_hint' : 'spk.live_no_session';
  $('#live-speakers-note', root).textContent = t(speakers.session ? 'spk.live_hint' : 'spk.live_no_session');
  // a final may redraw the list while someone types a name: the field being typed in keeps its text and focus
  const typing = boxEl.contains(document.activeElement) && document.activeElement.id ? document.activeElement : null;
  const typed = typing && typing.tagName === 'INPUT' ? typing.value : null;
  boxEl.replaceChildren(speakers.session
    ? namesEditor('live', '/api/sessions/' + encodeURIComponent(speakers.session), speakers.names, (label, name) => relabelWho(lines, label, name))
    : '');
  const again = typing && document.getElementById(typing.id);
  if (again) { if (typed !== null) again.value = typed; again.focus(); }
}

// A final of the current session updates the list: a label not listed yet, or a name the box gave it (an
// enrolled voice's becomes the session's name for the label)
function heard(f) {
  if (!f.speaker || !speakers.session || f.session_id !== speakers.session) return;
  const name = f.speaker_name || null;
  if (speakers.names.has(f.speaker) && speakers.names.get(f.speaker) === name) return;
  speakers.names.set(f.speaker, name);
  renderSpeakers();
}

export async function show() {
  await refresh();
}

export function relabel() { render(state); renderSpeakers(); }

async function refresh() {
  try { render(await get('/api/state')); } catch (_) { /* the badge says it */ }
  try {
    const hw = await get('/api/hotwords');
    const list = $('#live-hotwords', root);
    list.textContent = '';
    const terms = hw.terms || [];
    const session = (hw.layers && Array.isArray(hw.layers.session) && hw.layers.session) || [];
    for (const w of [...terms, ...session.filter((x) => !terms.includes(x))]) list.append(h('li', { text: w }));
    if (!list.children.length) list.append(h('li', { class: 'muted', i18n: 'live.no_hotwords' }));
  } catch (_) { /* optional */ }
}

function render(s) {
  state = s || {};
  const el = $('#live-state', root);
  el.dataset.state = state.state || '';
  el.textContent = t('state.' + (state.state || 'unknown')) + (state.reason ? ' (' + state.reason + ')' : '');
  $('#live-session-info', root).textContent = state.session_id
    ? t('live.session_on', { id: String(state.session_id).slice(0, 8) }) : t('live.session_off');
  $('#live-session-stop', root).disabled = !state.session_id;
  $('#live-listen-off', root).disabled = state.state !== 'listening';
  $('#live-listen-on', root).disabled = state.state === 'listening';
  showState(state);
  loadSpeakers();
}

async function listening(button, onOff) {
  await busy(button, async () => render((await post('/api/listening', { on: onOff })).state || (await get('/api/state'))));
}

async function startSession(button) {
  const name = $('#live-session-name', root).value.trim();
  const language = $('#live-language', root).value;
  await busy(button, async () => {
    await post('/api/sessions', { name: name || null, language: language || null });
    await refresh();
  });
}

async function stopSession(button) {
  await busy(button, async () => { await post('/api/sessions/current/stop'); await refresh(); });
}

function line(id) {
  let el = partials.get(id);
  if (!el) {
    el = h('p', { class: 'line partial', dataset: { id } });
    lines.append(el);
    partials.set(id, el);
    while (lines.children.length > MAX_LINES) lines.firstElementChild.remove();
  }
  return el;
}

function partial(p) {
  const el = line(p.utterance_id);
  if (el.classList.contains('final')) return;
  el.textContent = p.text || '';
  scroll();
}

function final(f) {
  const id = f.record_id || f.utterance_id || f.id; // the record's id is the utterance's
  const el = line(id);
  partials.delete(id);
  el.className = 'line final';
  el.textContent = '';
  const t0 = f.started_at ? new Date(f.started_at).toLocaleTimeString() : '';
  el.append(h('time', { class: 'muted', text: t0 }), ' ');
  if (f.speaker) el.append(who(f.speaker, f.speaker_name));
  el.append(document.createTextNode(f.text || ''));
  heard(f);
  scroll();
}

function scroll() {
  if (lines.scrollHeight - lines.scrollTop - lines.clientHeight < 80) lines.scrollTop = lines.scrollHeight;
}

function level(l) {
  const v = Math.max(-70, Math.min(0, Number(l.rms_db)));
  $('#live-meter', root).value = v;
  $('#live-level-text', root).textContent = t('live.level_db', { rms: Number(l.rms_db).toFixed(0), peak: Number(l.peak_db).toFixed(0) });
}
