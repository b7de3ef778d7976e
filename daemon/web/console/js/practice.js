// Practice: a target sentence, recorded on the box's microphone (a session until the first final), scored per
// character (Chinese, with pinyin and tones) or per word (English); a learner's past attempts.
import { get, on, post, query } from './api.js';
import { t } from './i18n.js';
import { $, busy, field, h, languageSelect, toast, when } from './util.js';

const PRESETS = ['今天天气很好', '我们一起去图书馆看书', '请把窗户打开', 'The quick brown fox jumps over the lazy dog', 'How are you today', 'Thank you very much'];
const WAIT_S = 30;
let root, waiting = null;

export function mount(section) {
  root = section;
  const target = h('input', { id: 'pr-target', type: 'text', list: 'pr-presets', maxlength: 500, 'data-i18n-ph': 'pr.target_ph' });
  section.append(
    h('h1', { id: 'h-practice', i18n: 'nav.practice' }),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' },
        field('pr.target', target, 'pr.target_hint'),
        h('datalist', { id: 'pr-presets' }, ...PRESETS.map((p) => h('option', { value: p }))),
        field('pr.learner', h('input', { id: 'pr-learner', type: 'text', maxlength: 100, value: localStorage.getItem('asrbox.learner') || '' })),
        field('pr.language', languageSelect('pr-language')),
        h('div', { class: 'row' },
          h('button', { type: 'button', id: 'pr-record', i18n: 'pr.record', onclick: (e) => record(e.target) }),
          h('button', { type: 'button', id: 'pr-stop', class: 'ghost', i18n: 'pr.stop', disabled: true, onclick: () => abort() })),
        h('p', { id: 'pr-status', class: 'muted', role: 'status' })),
      h('div', { class: 'card' }, h('h2', { i18n: 'pr.result' }), h('div', { id: 'pr-result' }))),
    h('div', { class: 'card' },
      h('div', { class: 'row spread' }, h('h2', { i18n: 'pr.attempts' }),
        h('button', { type: 'button', class: 'ghost small', i18n: 'refresh', onclick: () => attempts() })),
      h('table', { class: 'attempts' },
        h('thead', {}, h('tr', {}, ...['pr.when', 'pr.learner', 'pr.target', 'pr.heard', 'pr.score'].map((k) => h('th', { scope: 'col', i18n: k })))),
        h('tbody', { id: 'pr-attempts' }))));
  on('final', (f) => { if (waiting && (!waiting.session || f.session_id === waiting.session)) waiting.resolve(f); });
}

export async function show() { await attempts(); }

function status(key, vars) { $('#pr-status', root).textContent = key ? t(key, vars) : ''; }

async function record(button) {
  const target = $('#pr-target', root).value.trim();
  if (!target) { toast(t('pr.need_target')); $('#pr-target', root).focus(); return; }
  const learner = $('#pr-learner', root).value.trim();
  localStorage.setItem('asrbox.learner', learner);
  const language = $('#pr-language', root).value || null;
  await busy(button, async () => {
    $('#pr-stop', root).disabled = false;
    try {
      const res = await post('/api/sessions', { name: t('pr.session_name') + (learner ? ' · ' + learner : ''), language });
      const session = res.session_id || (res.session && res.session.id) || null;
      status('pr.speak');
      const heard = await new Promise((resolve, reject) => {
        waiting = { session, resolve, reject, timer: setTimeout(() => reject(new Error(t('pr.timeout', { s: WAIT_S }))), WAIT_S * 1000) };
      });
      status('pr.scoring');
      await post('/api/sessions/current/stop').catch(() => {});
      const result = await post('/api/practice/score', { target, record_id: heard.record_id || heard.id || heard.utterance_id, learner: learner || null, language });
      showResult(result.result || result);
      status('');
      await attempts();
    } catch (err) {
      await post('/api/sessions/current/stop').catch(() => {});
      status('');
      throw err;
    } finally {
      if (waiting) clearTimeout(waiting.timer);
      waiting = null;
      $('#pr-stop', root).disabled = true;
    }
  });
}

function abort() {
  if (waiting) waiting.reject(new Error(t('pr.aborted')));
}

function showResult(r) {
  const box = $('#pr-result', root);
  box.textContent = '';
  box.append(h('p', { class: 'score' }, h('strong', { id: 'pr-score', text: String(r.score) }), ' / 100'),
    h('p', { class: 'muted' }, h('span', { i18n: 'pr.heard' }), ': ', h('span', { text: r.heard || '' })));
  const units = h('ol', { class: 'units', lang: r.language === 'zh' ? 'zh-CN' : 'en' });
  for (const it of r.items || []) {
    const issue = it.issue ? t('issue.' + it.issue) : t('issue.ok');
    units.append(h('li', { class: 'unit ' + (it.ok ? 'ok' : 'bad'), title: issue },
      h('span', { class: 'exp', text: it.expected || '·' }),
      it.expected_pinyin !== undefined ? h('span', { class: 'py', text: it.expected_pinyin || '' }) : null,
      !it.ok ? h('span', { class: 'heard', text: (it.heard || '∅') + (it.heard_pinyin ? ' ' + it.heard_pinyin : '') }) : null,
      h('span', { class: 'issue', text: issue })));
  }
  box.append(units);
}

async function attempts() {
  const body = $('#pr-attempts', root);
  const learner = $('#pr-learner', root).value.trim();
  try {
    const res = await get('/api/practice/attempts' + query({ learner, limit: 50 }));
    body.textContent = '';
    for (const a of res.items || []) {
      body.append(h('tr', {}, h('td', { text: when(a.created_at) }), h('td', { text: a.learner || '' }),
        h('td', { text: a.target }), h('td', { text: a.heard }), h('td', { class: 'num', text: String(a.score) })));
    }
    if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted', i18n: 'pr.no_attempts' })));
  } catch (_) { /* practice may be off */ }
}
