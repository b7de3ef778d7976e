// The login page: POST /api/login {password}; on success back to where the user was going.
import * as i18n from './i18n.js';

function next() {
  const n = new URLSearchParams(location.search).get('next') || '/';
  return n.startsWith('/') && !n.startsWith('//') ? n : '/';
}

async function submit(e) {
  e.preventDefault();
  const button = document.getElementById('login-submit');
  const error = document.getElementById('login-error');
  const password = document.getElementById('password');
  error.textContent = '';
  if (!password.value) { error.textContent = i18n.t('login.empty'); password.focus(); return; }
  button.disabled = true;
  try {
    const r = await fetch('/api/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, credentials: 'same-origin',
      body: JSON.stringify({ password: password.value }),
    });
    let body = {};
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    if (r.ok && body.ok !== false) { location.assign(next()); return; }
    error.textContent = r.status === 429 ? i18n.t('login.slow_down')
      : (r.status === 401 || r.status === 403) ? i18n.t('login.wrong') : ((body.error && body.error.message) || 'HTTP ' + r.status);
    password.select();
  } catch (_) {
    error.textContent = i18n.t('login.network');
  } finally {
    button.disabled = false;
  }
}

async function start() {
  const saved = localStorage.getItem('asrbox.theme');
  if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
  await i18n.load(i18n.preferred());
  document.title = 'asrbox · ' + i18n.t('login.submit');
  document.getElementById('login-form').addEventListener('submit', submit);
  document.getElementById('lang-toggle').addEventListener('click', async () => {
    const l = i18n.lang === 'zh' ? 'en' : 'zh';
    localStorage.setItem('asrbox.lang', l);
    await i18n.load(l);
  });
  document.body.dataset.ready = '1';
}

start();
