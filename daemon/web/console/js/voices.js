// Voices: the enrolled voices (a name and an embedding each, never audio): list, delete (asked first), enroll one
// from a short clip of one person. A box without speaker models says so when asked, and enrolling is turned off.
import { api, get, upload } from './api.js';
import { t } from './i18n.js';
import { $, busy, confirmDialog, field, h, toast, when } from './util.js';
import { noModels } from './speakers.js';

let root, voices = [];

export function mount(section) {
  root = section;
  const file = h('input', { id: 'vo-file', type: 'file', required: true, accept: 'audio/*,video/*,.wav,.mp3,.m4a,.flac,.ogg,.opus' });
  section.append(
    h('h1', { id: 'h-voices', i18n: 'nav.voices' }),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' },
        h('h2', { i18n: 'vo.enrolled' }),
        h('ul', { id: 'vo-list', class: 'voices' })),
      h('div', { class: 'card' },
        h('h2', { i18n: 'vo.enroll' }),
        h('p', { id: 'vo-nomodels', class: 'note warn', role: 'status', hidden: true, i18n: 'spk.no_models' }),
        h('form', { id: 'vo-form', onsubmit: (e) => { e.preventDefault(); enroll($('#vo-enroll', root)); } },
          h('fieldset', { id: 'vo-fields', class: 'plain' },
            field('vo.name', h('input', { id: 'vo-name', type: 'text', maxlength: 100, required: true, 'data-i18n-ph': 'vo.name_ph' })),
            field('vo.file', file, 'vo.file_hint'),
            h('div', { class: 'row' }, h('button', { type: 'submit', id: 'vo-enroll', i18n: 'vo.enroll_button' })))))),
    h('div', { class: 'card' },
      h('h2', { i18n: 'vo.how' }),
      h('dl', { class: 'layers' },
        h('dt', { i18n: 'vo.how_labels' }), h('dd', { i18n: 'vo.how_labels_text' }),
        h('dt', { i18n: 'vo.how_names' }), h('dd', { i18n: 'vo.how_names_text' }),
        h('dt', { i18n: 'vo.how_voices' }), h('dd', { i18n: 'vo.how_voices_text' }))));
}

export async function show() {
  try {
    const res = await get('/api/speakers/voices');
    voices = res.voices || [];
  } catch (err) { toast(err.message); }
  render();
}

export function relabel() { render(); }

function render() {
  const ul = $('#vo-list', root);
  ul.textContent = '';
  for (const v of voices) {
    ul.append(h('li', { dataset: { name: v.name } },
      h('strong', { class: 'vo-name', text: v.name }),
      h('span', { class: 'muted', text: t('vo.seconds', { s: Number(v.seconds || 0).toFixed(1) }) + ' · ' + when(v.created_at) }),
      h('button', { type: 'button', class: 'ghost small danger', 'aria-label': t('delete') + ' ' + v.name, i18n: 'delete', onclick: (e) => remove(e.target, v.name) })));
  }
  if (!voices.length) ul.append(h('li', { class: 'muted', i18n: 'vo.none' }));
}

async function remove(button, name) {
  if (!(await confirmDialog(t('vo.confirm_delete', { name })))) return;
  await busy(button, async () => {
    await api('DELETE', '/api/speakers/voices/' + encodeURIComponent(name));
    voices = voices.filter((v) => v.name !== name);
    render();
  });
}

// No speaker models on this box: enrolling cannot work, so it is turned off with a note saying what to do
function modelsMissing() {
  $('#vo-nomodels', root).hidden = false;
  $('#vo-fields', root).disabled = true;
}

async function enroll(button) {
  const name = $('#vo-name', root).value.trim();
  const input = $('#vo-file', root);
  const f = input.files[0];
  if (!name || !f) { toast(t('vo.need_both')); return; }
  const form = new FormData();
  form.append('name', name);
  form.append('file', f, f.name);
  button.disabled = true;
  try {
    await upload('/api/speakers/voices', form);
    $('#vo-name', root).value = '';
    input.value = '';
    toast(t('vo.enrolled_ok', { name }), 'ok');
    await show();
  } catch (err) {
    if (noModels(err)) modelsMissing();
    else toast(err.message);
  } finally {
    button.disabled = false;
  }
}
