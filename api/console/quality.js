// Data quality: refused messages (the quarantine) by reason, the data-quality findings (invalid values
// kept but not used as identifiers) where the server has them, and identity conflicts.

import { html, Card, Table, Chip, Empty, ErrorBox, Loading, Pager, Bars, usePaged, useLoad, fmtNumber, fmtTime } from './ui.js';
import { t } from './i18n.js';
import { get } from './api.js';
import { decisionText } from './customer.js';

function Reasons() {
  // The latest 1,000 refusals grouped by code and field: what to fix first.
  const recent = useLoad(() => get('/v1/quarantine', { limit: 1000 }), []);
  if (!recent.data) return recent.error ? html`<${ErrorBox} error=${recent.error} />` : html`<${Loading} />`;
  const by = new Map();
  for (const q of recent.data.items) {
    const key = `${q.code}${q.field ? ' · ' + q.field : ''}`;
    by.set(key, (by.get(key) || 0) + 1);
  }
  const items = [...by.entries()].sort((a, b) => b[1] - a[1]).map(([label, value]) => ({ label, value }));
  return html`<p class="muted small">${t('quality.latest', { n: fmtNumber(recent.data.items.length) })}${recent.data.next_before ? ' ' + t('quality.more') : ''}</p>
    <${Bars} items=${items} testid="reasons" />`;
}

function Quarantine() {
  const paged = usePaged(async (before) => {
    const page = await get('/v1/quarantine', { limit: 20, before });
    return { items: page.items, next: page.next_before };
  }, []);
  return html`<${Card} title=${t('quality.quarantine')} id="quarantine" wide actions=${html`<${Pager} paged=${paged} />`}>
    ${paged.items === null ? html`<${Loading} />` : html`<${Table} testid="quarantine" rows=${paged.items} columns=${[
      { label: t('quality.received'), render: (r) => fmtTime(r.received_at) },
      { label: t('quality.source'), render: (r) => r.source },
      { label: t('quality.code'), render: (r) => html`<${Chip} kind="bad">${r.code}</${Chip}>` },
      { label: t('quality.field'), render: (r) => html`<code>${r.field || '—'}</code>` },
      { label: t('quality.reason'), render: (r) => r.reason },
      { label: t('quality.payload'), render: (r) => html`<details><summary>${t('quality.show')}</summary><pre>${typeof r.payload === 'string' ? r.payload : JSON.stringify(r.payload, null, 1)}</pre></details>` },
    ]} />`}
    <${ErrorBox} error=${paged.error} />
  </${Card}>`;
}

function Findings() {
  const findings = useLoad(() => get('/v1/quality').catch((e) => (e.status === 404 ? { missing: true } : Promise.reject(e))), []);
  const d = findings.data;
  let body;
  if (!d) body = findings.error ? html`<${ErrorBox} error=${findings.error} />` : html`<${Loading} />`;
  else if (d.missing) body = html`<p class="muted" data-testid="no-findings">${t('quality.noEndpoint')}</p>`;
  else {
    const items = d.by_reason || d.items || [];
    body = html`<${Table} rows=${items} columns=${[
      { label: t('quality.field'), render: (r) => html`<code>${r.field}</code>` },
      { label: t('quality.reason'), render: (r) => r.reason || r.code },
      { label: t('quality.count'), render: (r) => fmtNumber(r.count ?? r.profiles ?? r.values), num: true },
    ]} />`;
  }
  return html`<${Card} title=${t('quality.findings')} id="findings">${body}</${Card}>`;
}

function Conflicts() {
  const paged = usePaged(async (before) => {
    const page = await get('/v1/identity/conflicts', { limit: 20, before });
    return { items: page.items, next: page.next_before };
  }, []);
  return html`<${Card} title=${t('quality.conflicts')} id="conflicts" wide actions=${html`<${Pager} paged=${paged} />`}>
    ${paged.items === null ? html`<${Loading} />` : html`<${Table} testid="conflicts" rows=${paged.items} columns=${[
      { label: t('quality.recorded'), render: (r) => fmtTime(r.recorded_at) },
      { label: t('quality.decision'), render: (r) => html`<${Chip} kind="warn">${t('decision.' + r.kind)}</${Chip}>` },
      { label: t('quality.what'), render: (r) => decisionText(r) },
      { label: t('quality.profiles'), render: (r) => html`${(r.profiles || [r.profile]).filter(Boolean).map((p) => html`<a href=${'#/customer/' + encodeURIComponent(p)}><code>${p}</code></a> `)}` },
      { label: t('quality.event'), render: (r) => html`<small>${r.caused_by}</small>` },
    ]} />`}
    <${ErrorBox} error=${paged.error} />
  </${Card}>`;
}

export function QualityPage() {
  return html`<div class="page">
    <header class="page-head"><h1>${t('quality.title')}</h1></header>
    <div class="grid">
      <${Card} title=${t('quality.byReason')} id="reasons"><${Reasons} /></${Card}>
      <${Findings} />
    </div>
    <${Quarantine} />
    <${Conflicts} />
  </div>`;
}
