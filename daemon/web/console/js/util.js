// Small DOM and formatting helpers shared by the pages. User data only ever goes in as text, never as HTML.
import { t } from './i18n.js';

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'i18n') { el.dataset.i18n = v; el.textContent = t(v); }
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

export function clock(s) {
  if (s === null || s === undefined || Number.isNaN(Number(s))) return '';
  const v = Math.max(0, Number(s));
  const m = Math.floor(v / 60), sec = v - m * 60;
  const hh = Math.floor(m / 60);
  const mm = hh ? String(m % 60).padStart(2, '0') : String(m);
  return (hh ? hh + ':' : '') + mm + ':' + sec.toFixed(1).padStart(4, '0');
}

export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(document.documentElement.lang, { dateStyle: 'short', timeStyle: 'medium' });
}

export function bytes(n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : String(v)) + ' ' + u[i];
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

let toastTimer = 0;
export function toast(message, kind = 'error') {
  const box = document.getElementById('toast');
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, kind === 'error' ? 8000 : 3000);
}

export function confirmDialog(text) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = 'cancel';
    dlg.showModal();
    document.getElementById('confirm-ok').focus();
  });
}

export function debounce(fn, ms) {
  let id = 0;
  return (...a) => { clearTimeout(id); id = setTimeout(() => fn(...a), ms); };
}

// Run an async action from a button: disabled while it runs, errors shown once.
export async function busy(button, action) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (err) {
    toast(err.message || String(err));
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export const LANGUAGES = ['zh', 'en', 'yue', 'ja', 'ko', 'fr', 'de', 'es', 'ru'];

export function languageSelect(id, withAuto = true) {
  const sel = h('select', { id });
  if (withAuto) sel.append(h('option', { value: '', i18n: 'lang.auto' }));
  for (const l of LANGUAGES) sel.append(h('option', { value: l, i18n: 'lang.' + l }));
  return sel;
}

export function field(labelKey, control, hintKey) {
  return h('div', { class: 'field' },
    h('label', { for: control.id, i18n: labelKey }), control,
    hintKey ? h('small', { class: 'hint', i18n: hintKey }) : null);
}
