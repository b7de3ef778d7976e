// Speakers shared by the pages: one colour per label (S1, S2... the caption page's six colours, by number), the
// label or its given name before a line, and a small "name the speakers" list (PUT .../speakers/{label}).
import { api, get } from './api.js';
import { t } from './i18n.js';
import { busy, h, toast } from './util.js';

export const COLOURS = 6;

// S1 -> 0, S2 -> 1, ... S7 -> 0 again; anything else -> -1 (no colour)
export function speakerIndex(label) {
  const n = /^S(\d+)$/.exec(label || '');
  return n ? (parseInt(n[1], 10) - 1) % COLOURS : -1;
}

export function speakerClass(label) {
  const i = speakerIndex(label);
  return i < 0 ? 'speaker' : 'speaker spk' + i;
}

// "Ms Li: " (or "S1: "), coloured by the label; the label stays in the title and data-speaker
export function who(label, name, sep = ': ') {
  if (!label) return null;
  return h('span', { class: speakerClass(label), dataset: { speaker: label }, title: name ? label : null, text: (name || label) + sep });
}

// After a rename: every label shown under `root` takes the new name at once
export function relabelWho(root, label, name) {
  for (const el of root.querySelectorAll(`.speaker[data-speaker="${CSS.escape(label)}"]`)) {
    const sep = el.textContent.endsWith(': ') ? ': ' : '';
    el.textContent = (name || label) + sep;
    if (name) el.title = label; else el.removeAttribute('title');
  }
}

function byLabel(a, b) { return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0); }

// GET {base}/speakers -> Map label -> name|null
export async function loadNames(base) {
  const res = await get(base + '/speakers');
  return new Map((res.speakers || []).map((s) => [s.label, s.name || null]));
}

// The speaker models are missing on this box (the reply of an API that needs them)
export function noModels(err) {
  return /speaker models/i.test((err && err.message) || '');
}

// A list of labels, each with its colour and a name field; Enter or "Rename" stores it (an empty name removes
// it) and calls onRenamed(label, name). `names` is a Map label -> name|null; `prefix` makes the ids unique.
export function namesEditor(prefix, base, names, onRenamed) {
  const ul = h('ul', { class: 'speakers', id: prefix + '-speakers' });
  for (const label of Array.from(names.keys()).sort(byLabel)) {
    const id = prefix + '-name-' + label;
    const input = h('input', { id, type: 'text', maxlength: 100, value: names.get(label) || '', placeholder: t('spk.name_ph'), 'data-i18n-ph': 'spk.name_ph', 'aria-label': t('spk.name_for', { label }) });
    const form = h('form', { class: 'row', dataset: { speaker: label }, onsubmit: (e) => { e.preventDefault(); save(e.submitter || form.querySelector('button')); } },
      h('label', { for: id, class: 'swatch ' + speakerClass(label), title: t('spk.name_for', { label }), text: label }),
      input,
      h('button', { type: 'submit', class: 'ghost small', i18n: 'spk.rename' }));
    async function save(button) {
      const name = input.value.trim();
      await busy(button, async () => {
        const res = await api('PUT', base + '/speakers/' + encodeURIComponent(label), { name });
        names.set(label, res.name || null);
        input.value = res.name || '';
        onRenamed(label, res.name || null);
        toast(t(res.name ? 'spk.renamed' : 'spk.unnamed', { label, name: res.name || '' }), 'ok');
      });
    }
    ul.append(h('li', {}, form));
  }
  if (!names.size) ul.append(h('li', { class: 'muted', i18n: 'spk.none' }));
  return ul;
}
