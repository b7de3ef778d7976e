// The console's shell: language, theme, login state, the page router (#/page/...), the state badge.
import * as i18n from './i18n.js';
import { get, on, post, setCsrf, toLogin } from './api.js';
import { $, $$, toast } from './util.js';

const PAGES = ['live', 'transcribe', 'history', 'hotwords', 'voices', 'practice', 'status'];
const loaded = new Map();
let current = null;

const modules = new Map();
async function page(name, mount = true) {
  if (!modules.has(name)) {
    modules.set(name, import('./' + name + '.js').catch((err) => { modules.delete(name); throw err; }));
  }
  const mod = await modules.get(name);
  if (mount && !loaded.has(name)) {
    const section = document.getElementById('page-' + name);
    mod.mount(section);
    i18n.apply(section);
    loaded.set(name, mod);
  }
  return loaded.get(name);
}

function hashParts() {
  return location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
}

function currentName() {
  const first = hashParts()[0];
  return PAGES.includes(first) ? first : 'live';
}

async function route() {
  const parts = hashParts();
  const name = currentName();
  if (current && current !== name) {
    document.getElementById('page-' + current).hidden = true;
    const prev = loaded.get(current);
    if (prev && prev.hide) prev.hide();
  }
  for (const a of $$('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const mod = await page(name);
  document.getElementById('page-' + name).hidden = false;
  const changed = current !== name;
  current = name;
  await mod.show(parts.slice(1));
  if (changed) document.title = i18n.t('nav.' + name) + ' · asrbox';
}

export function showState(s) {
  const badge = $('#state-badge');
  badge.dataset.state = s.state || '';
  badge.textContent = i18n.t('state.' + (s.state || 'unknown')) + (s.session_id ? ' · ' + i18n.t('live.in_session') : '');
  badge.title = s.reason || '';
}

function theme(next) {
  const root = document.documentElement;
  if (next) localStorage.setItem('asrbox.theme', next);
  const saved = localStorage.getItem('asrbox.theme');
  if (saved === 'light' || saved === 'dark') root.dataset.theme = saved;
  else delete root.dataset.theme;
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme === 'dark'
    || (!document.documentElement.dataset.theme && matchMedia('(prefers-color-scheme: dark)').matches);
  theme(dark ? 'light' : 'dark');
}

async function switchLang() {
  const next = i18n.lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('asrbox.lang', next);
  await i18n.load(next);
  for (const [name, mod] of loaded) if (mod.relabel) mod.relabel();
  if (current) document.title = i18n.t('nav.' + current) + ' · asrbox';
  $('#lang-toggle').textContent = i18n.t('lang.switch');
  refreshState();
}

let lastState = {};
async function refreshState() {
  try { lastState = await get('/api/state'); } catch (_) { /* shown by the page that needs it */ }
  showState(lastState);
}

async function start() {
  theme();
  // the words, who we are and the page's module are fetched side by side: the first render waits for one trip
  const me = get('/api/me').catch((err) => (err.status === 401 ? null : { auth: 'open', csrf: null }));
  const name = currentName();
  const early = page(name, false).catch(() => null);
  await i18n.load(i18n.preferred());
  if ((await me) === null) { toLogin(); return; }
  const who = await me;
  setCsrf(who.csrf);
  $('#logout').hidden = who.auth !== 'session';
  $('#logout').addEventListener('click', async () => { await post('/api/logout').catch(() => {}); toLogin(); });
  $('#theme-toggle').addEventListener('click', toggleTheme);
  $('#lang-toggle').addEventListener('click', switchLang);
  on('state', (s) => { lastState = s; showState(s); });
  on('_error', () => { $('#state-badge').dataset.conn = 'lost'; });
  on('_open', () => { delete $('#state-badge').dataset.conn; refreshState(); });
  window.addEventListener('hashchange', () => route().catch((e) => toast(e.message)));
  await early;
  refreshState();
  await route();
  document.body.dataset.ready = '1';
}

start().catch((err) => toast(err.message || String(err)));
