// The catalog: computed traits, tags with how many profiles have each value and what they spent (bar
// charts), the RFM groups, and each segment's size over time (from the membership history).

import { useState } from 'preact/hooks';
import { html, Card, Table, Chip, Empty, ErrorBox, Loading, Bars, Lines, RFM_ORDER, useLoad, fmtNumber, fmtMoney, fmtTime, fmtValue } from './ui.js';
import { t } from './i18n.js';
import { get } from './api.js';

function traitSummary(d) {
  if (!d) return '—';
  const parts = [t('fn.' + d.function) || d.function];
  if (d.property) parts.push(d.property);
  parts.push(`· ${d.event}`);
  if (d.window && d.window !== 'all') parts.push(`· ${t('catalog.window', { w: d.window })}`);
  if (d.where?.length) parts.push(`· ${d.where.map((w) => `${w.property} ${w.op} ${fmtValue(w.value)}`).join(', ')}`);
  return parts.join(' ');
}

/// One tag of `GET /v1/tags` (which answers every tag's values with their population and spend).
function TagCard({ d }) {
  const [by, setBy] = useState('profiles');
  const name = d.name;
  const type = d.definition?.type || 'rule';
  let values = [...(d.values || [])];
  if (type === 'rfm') values.sort((a, b) => RFM_ORDER.indexOf(a.value) - RFM_ORDER.indexOf(b.value));
  else values.sort((a, b) => b.profiles - a.profiles);
  const items = values.map((v) => ({
    label: fmtValue(v.value),
    value: by === 'profiles' ? v.profiles : by === 'spend' ? v.total_spend : v.average_spend,
    note: by === 'profiles' && d.profiles ? `${fmtNumber((100 * v.profiles) / d.profiles, 1)}%` : '',
  }));
  const format = by === 'profiles' ? fmtNumber : fmtMoney;
  return html`<${Card} title=${html`${name} <${Chip} kind="tag">${t('tagtype.' + type)}</${Chip}>`} id=${'tag-' + name}
    actions=${html`<div class="seg-toggle">${['profiles', 'spend', 'average'].map((k) => html`<button class=${'ghost small' + (by === k ? ' active' : '')} onClick=${() => setBy(k)}>${t('catalog.by.' + k)}</button>`)}</div>`}>
    <p class="muted small">${t('catalog.tagTotals', { n: fmtNumber(d.profiles), spend: fmtMoney(d.total_spend) })}${d.status !== 'ready' ? ' · ' + t('status.' + d.status) : ''}</p>
    <${Bars} items=${items} format=${format} testid=${'bars-' + name} />
    ${d.rfm_thresholds && html`<details><summary>${t('catalog.rfmThresholds')}</summary>
      <ul class="kv small"><li><span>${t('catalog.recency')}</span><b>${fmtValue(d.rfm_thresholds.recency_days)}</b></li><li><span>${t('catalog.frequency')}</span><b>${fmtValue(d.rfm_thresholds.frequency)}</b></li><li><span>${t('catalog.monetary')}</span><b>${fmtValue(d.rfm_thresholds.monetary)}</b></li><li><span>${t('catalog.computedAt')}</span><b>${fmtTime(d.rfm_thresholds.computed_at)}</b></li></ul></details>`}
  </${Card}>`;
}

export function CatalogPage() {
  const traits = useLoad(() => get('/v1/traits'), []);
  const tags = useLoad(() => get('/v1/tags'), []);
  const sizes = useLoad(() => get('/v1/console/segment-sizes', { days: 30 }), []);
  const tagItems = tags.data?.items || [];
  const rfm = tagItems.filter((x) => x.definition?.type === 'rfm');
  const others = tagItems.filter((x) => x.definition?.type !== 'rfm');
  return html`<div class="page">
    <header class="page-head"><h1>${t('catalog.title')}</h1></header>
    <div class="grid">
      ${rfm.map((x) => html`<${TagCard} key=${x.name} d=${x} />`)}
      <${Card} title=${t('catalog.sizes')} id="sizes">
        ${sizes.data ? html`<${Lines} testid="sizes" labels=${sizes.data.dates} series=${sizes.data.items.map((s) => ({ name: s.segment, values: s.sizes }))} />` : sizes.error ? html`<${ErrorBox} error=${sizes.error} />` : html`<${Loading} />`}
        <p class="muted small">${t('catalog.sizesNote')}</p>
      </${Card}>
      ${others.map((x) => html`<${TagCard} key=${x.name} d=${x} />`)}
    </div>
    <${Card} title=${t('catalog.traits')} id="traits-list" wide>
      ${traits.data ? html`<${Table} testid="traits" rows=${traits.data.items} columns=${[
        { label: t('catalog.name'), render: (r) => html`<code>${r.name}</code>` },
        { label: t('catalog.definition'), render: (r) => traitSummary(r.definition) },
        { label: t('builder.status'), render: (r) => html`<${Chip} kind=${r.status === 'ready' ? 'ok' : 'warn'}>${t('status.' + r.status)}</${Chip}>${r.status === 'backfilling' ? ` ${fmtNumber(r.profiles_done)}/${fmtNumber(r.profiles_total)}` : ''}` },
        { label: t('catalog.version'), render: (r) => r.version, num: true },
        { label: t('builder.definedAt'), render: (r) => fmtTime(r.defined_at) },
      ]} />` : traits.error ? html`<${ErrorBox} error=${traits.error} />` : html`<${Loading} />`}
    </${Card}>
    ${tags.data && !tagItems.length && html`<${Empty}>${t('catalog.noTags')}</${Empty}>`}
    ${!tags.data && (tags.error ? html`<${ErrorBox} error=${tags.error} />` : html`<${Loading} />`)}
  </div>`;
}
