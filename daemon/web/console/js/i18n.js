// Chinese and English: follows the browser until the user picks one (kept in localStorage).
const BASE = new URL('../i18n/', import.meta.url);
let dict = {};
export let lang = 'en';

export function preferred() {
  const saved = localStorage.getItem('asrbox.lang');
  if (saved === 'zh' || saved === 'en') return saved;
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const l of langs) {
    const x = String(l).toLowerCase();
    if (x.startsWith('zh')) return 'zh';
    if (x.startsWith('en')) return 'en';
  }
  return 'en';
}

export async function load(l) {
  const r = await fetch(new URL(l + '.json', BASE));
  dict = await r.json();
  lang = l;
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
  apply(document);
}

export function t(key, vars) {
  let s = dict[key];
  if (s === undefined) s = key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll('{' + k + '}', String(v));
  return s;
}

export function apply(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-ph]')) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
}
