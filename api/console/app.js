// The console's shell: sign in, the navigation between pages (by URL hash, so a page can be
// bookmarked and the back button works) and the language switch.

import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { html, ErrorBox } from './ui.js';
import { t, lang, setLang, LANGS } from './i18n.js';
import { get, token, ApiError } from './api.js';
import { CustomerPage } from './customer.js';
import { SegmentsPage } from './segments.js';
import { CatalogPage } from './catalog.js';
import { QualityPage } from './quality.js';
import { LivePage } from './live.js';

const PAGES = [
  ['customer', 'nav.customer', CustomerPage],
  ['segments', 'nav.segments', SegmentsPage],
  ['catalog', 'nav.catalog', CatalogPage],
  ['quality', 'nav.quality', QualityPage],
  ['live', 'nav.live', LivePage],
];

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return { page: PAGES.some((p) => p[0] === page) ? page : 'customer', arg: rest.map(decodeURIComponent).join('/') };
}

function SignIn({ onSignedIn }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    if (!value.trim()) return;
    setBusy(true);
    setError(null);
    token.set(value.trim());
    try {
      const session = await get('/v1/console/session');
      onSignedIn(session);
    } catch (err) {
      token.clear();
      setError(err.status === 401 ? new ApiError(401, { error: { message: t('signin.wrong') } }) : err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="signin">
    <form class="signin-box" onSubmit=${submit}>
      <div class="brand big"><img src=${document.querySelector('link[rel=icon]').href} alt="" /> cdp</div>
      <h1>${t('signin.title')}</h1>
      <p class="muted">${t('signin.hint')}</p>
      <label for="token">${t('signin.token')}</label>
      <input id="token" type="password" autocomplete="off" value=${value} onInput=${(e) => setValue(e.target.value)} />
      <${ErrorBox} error=${error} />
      <button type="submit" disabled=${busy}>${t('signin.submit')}</button>
      <p class="muted small">${t('signin.storage')}</p>
      <${LangSwitch} />
    </form>
  </div>`;
}

function LangSwitch() {
  return html`<div class="lang">${LANGS.map(([code, name]) => html`
    <button type="button" class=${'link' + (lang() === code ? ' active' : '')} onClick=${() => setLang(code)}>${name}</button>`)}
  </div>`;
}

function App() {
  const [, setTick] = useState(0);
  const [session, setSession] = useState(null);
  const [checking, setChecking] = useState(!!token.get());
  const [where, setWhere] = useState(route());
  useEffect(() => {
    const onLang = () => setTick((n) => n + 1);
    const onHash = () => setWhere(route());
    const onUnauthorized = () => { token.clear(); setSession(null); };
    window.addEventListener('cdp:lang', onLang);
    window.addEventListener('hashchange', onHash);
    window.addEventListener('cdp:unauthorized', onUnauthorized);
    if (token.get()) {
      get('/v1/console/session').then(setSession, () => token.clear()).finally(() => setChecking(false));
    }
    return () => {
      window.removeEventListener('cdp:lang', onLang);
      window.removeEventListener('hashchange', onHash);
      window.removeEventListener('cdp:unauthorized', onUnauthorized);
    };
  }, []);
  useEffect(() => { document.documentElement.lang = lang(); document.title = t('app.title'); });
  if (checking) return null;
  if (!session) return html`<${SignIn} onSignedIn=${setSession} />`;
  const can = {
    write: session.scopes.includes('write'),
    admin: session.scopes.includes('admin'),
  };
  const Page = PAGES.find((p) => p[0] === where.page)[2];
  const signOut = () => { token.clear(); setSession(null); };
  return html`<div class="shell">
    <aside class="side">
      <div class="brand"><img src=${document.querySelector('link[rel=icon]').href} alt="" /> cdp <small>${t('app.console')}</small></div>
      <nav>${PAGES.map(([id, label]) => html`
        <a href=${'#/' + id} class=${where.page === id ? 'active' : ''} aria-current=${where.page === id ? 'page' : undefined}>${t(label)}</a>`)}
      </nav>
      <div class="side-foot">
        <div class="who"><span class="muted">${t('app.workspace')}</span> <b data-testid="workspace">${session.workspace}</b></div>
        <div class="who"><span class="muted">${t('app.scopes')}</span> <span data-testid="scopes">${session.scopes.map((s) => t('scope.' + s)).join(' · ')}</span></div>
        ${!can.write && html`<div class="readonly" data-testid="read-only">${t('app.readonly')}</div>`}
        <${LangSwitch} />
        <button class="ghost" onClick=${signOut}>${t('app.signout')}</button>
      </div>
    </aside>
    <main class="main" key=${where.page}>
      <${Page} arg=${where.arg} can=${can} session=${session} />
    </main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
