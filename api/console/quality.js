// Data quality: refused messages (the quarantine) by reason, the data-quality findings (invalid values
// kept but not used as identifiers) by field and reason and page by page, and identity conflicts. Every
// list is read a page at a time (the API's `limit` and `before` cursors).

import { useState } from 'preact/hooks';
import { html, Card, Table, Chip, ErrorBox, Loading, Pager, Bars, usePaged, useLoad, fmtNumber, fmtTime } from './ui.js';
import { t } from './i18n.js';
import { get } from './api.js';
import { decisionText } from './customer.js';

function Reasons() {
  // Every refusal of the workspace counted by code and field (the first page's `by_reason`): what to
  // fix first.
  const first = useLoad(() => get('/v1/quarantine', { limit: 1 }), []);
  if (!first.data) return first.error ? html`<${ErrorBox} error=${first.error} />` : html`<${Loading} />`;
  const items = first.data.by_reason.map((r) => ({
    label: `${r.code}${r.field ? ' · ' + r.field : ''}`,
    value: r.count,
  }));
  return html`<p class="muted small">${t('quality.total', { n: fmtNumber(first.data.total) })}</p>
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
  // Counts by field and reason, and the findings themselves a page at a time, newest first.
  const [counts, setCounts] = useState(null);
  const [missing, setMissing] = useState(false);
  const paged = usePaged(async (before) => {
    try {
      const page = await get('/v1/quality', { limit: 20, before });
      setCounts({ total: page.total, by: page.by_reason || [] });
      return { items: page.items || [], next: page.next_before };
    } catch (e) {
      if (e.status !== 404) throw e;
      setMissing(true);
      return { items: [], next: null };
    }
  }, []);
  if (missing) return html`<${Card} title=${t('quality.findings')} id="findings"><p class="muted" data-testid="no-findings">${t('quality.noEndpoint')}</p></${Card}>`;
  return html`<${Card} title=${t('quality.findings')} id="findings">
    ${counts ? html`<p class="muted small">${t('quality.findingsTotal', { n: fmtNumber(counts.total) })}</p>
      <${Table} testid="findings-by-reason" rows=${counts.by} columns=${[
        { label: t('quality.field'), render: (r) => html`<code>${r.field}</code>` },
        { label: t('quality.code'), render: (r) => html`<${Chip} kind="warn">${r.code}</${Chip}>` },
        { label: t('quality.count'), render: (r) => fmtNumber(r.count), num: true },
      ]} />` : paged.error ? '' : html`<${Loading} />`}
    <${ErrorBox} error=${paged.error} />
  </${Card}>
  <${Card} title=${t('quality.findingsList')} id="findings-list" wide actions=${html`<${Pager} paged=${paged} />`}>
    ${paged.items === null ? html`<${Loading} />` : html`<${Table} testid="findings" rows=${paged.items} columns=${[
      { label: t('quality.received'), render: (r) => fmtTime(r.received_at) },
      { label: t('quality.source'), render: (r) => r.source },
      { label: t('quality.field'), render: (r) => html`<code>${r.field}</code>` },
      { label: t('quality.code'), render: (r) => html`<${Chip} kind="warn">${r.code}</${Chip}>` },
      { label: t('quality.reason'), render: (r) => r.reason },
      { label: t('quality.message'), render: (r) => html`<small>${r.message_id}</small>` },
    ]} />`}
  </${Card}>`;
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
