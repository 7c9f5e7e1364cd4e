// Live changes: segment enters and exits and tag changes as cdp publishes them (`GET /v1/stream`), the
// latest first, with running counts.

import { useEffect, useState } from 'preact/hooks';
import { html, Card, Table, Chip, Empty, ErrorBox, fmtNumber, fmtTime, fmtValue } from './ui.js';
import { t } from './i18n.js';
import { stream } from './api.js';

const KEEP = 200;

export function LivePage() {
  const [events, setEvents] = useState([]);
  const [counts, setCounts] = useState({});
  const [status, setStatus] = useState('connecting');
  const [error, setError] = useState(null);
  const [paused, setPaused] = useState(false);
  useEffect(() => {
    const abort = new AbortController();
    let stopped = false;
    const connect = async () => {
      while (!stopped) {
        try {
          setStatus('connecting');
          await stream((m) => {
            if (m.event === 'lagged') return;
            setCounts((c) => ({ ...c, [m.event]: (c[m.event] || 0) + 1 }));
            setEvents((list) => [{ ...m, received: new Date().toISOString() }, ...list].slice(0, KEEP));
          }, abort.signal, () => { setStatus('live'); setError(null); });
        } catch (e) {
          if (e.name === 'AbortError' || stopped) return;
          setError(e);
          if (e.status === 401 || e.status === 403) return;
        }
        setStatus('reconnecting');
        await new Promise((r) => setTimeout(r, 2000));
      }
    };
    connect();
    return () => { stopped = true; abort.abort(); };
  }, []);
  const [shown, setShown] = useState([]);
  useEffect(() => { if (!paused) setShown(events); }, [events, paused]);
  return html`<div class="page">
    <header class="page-head"><h1>${t('live.title')}</h1>
      <span class=${'status ' + status} data-testid="live-status">● ${t('live.' + status)}</span>
      <button class="ghost small" onClick=${() => setPaused(!paused)}>${paused ? t('live.resume') : t('live.pause')}</button>
      <button class="ghost small" onClick=${() => { setEvents([]); setCounts({}); }}>${t('common.clear')}</button>
    </header>
    <div class="stats">
      ${['segment.entered', 'segment.exited', 'tag.changed'].map((k) => html`<div class="stat"><span>${t('live.kind.' + k)}</span><b>${fmtNumber(counts[k] || 0)}</b></div>`)}
    </div>
    <${ErrorBox} error=${error} />
    <${Card} title=${t('live.changes')} id="changes" wide>
      ${shown.length ? html`<${Table} testid="live" rows=${shown} columns=${[
        { label: t('live.at'), render: (m) => fmtTime(m.data.at || m.data.changed_at || m.received) },
        { label: t('live.kind'), render: (m) => html`<${Chip} kind=${m.event === 'segment.entered' ? 'ok' : m.event === 'segment.exited' ? 'bad' : 'tag'}>${t('live.kind.' + m.event)}</${Chip}>` },
        { label: t('live.what'), render: (m) => (m.data.segment ? html`<code>${m.data.segment}</code>` : m.data.tag ? html`<code>${m.data.tag}</code> ${fmtValue(m.data.previous)} → <b>${fmtValue(m.data.value)}</b>` : '—') },
        { label: t('live.profile'), render: (m) => (m.data.profile_id ? html`<a href=${'#/customer/' + encodeURIComponent(m.data.profile_id)}><code>${m.data.profile_id}</code></a>` : '—') },
        { label: t('live.cause'), render: (m) => html`<small>${m.data.caused_by || '—'}</small>` },
        { label: t('live.reachable'), render: (m) => (m.data.reachable || []).map((c) => t('channel.' + c)).join(' · ') || '—' },
      ]} />` : html`<${Empty}>${t('live.waiting')}</${Empty}>`}
    </${Card}>
  </div>`;
}
