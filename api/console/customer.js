// The 360 view: find a customer by any identifier, then everything cdp knows about them — identifiers,
// traits with their source, computed traits, tags, segments, consent, the paged timeline, why OneID made
// them one customer, and their membership history (also as it stood at a chosen time).

import { useEffect, useState } from 'preact/hooks';
import { html, Card, Table, Chip, Empty, ErrorBox, Loading, Pager, usePaged, useListPages, useLoad, fmtTime, fmtValue, fmtNumber } from './ui.js';
import { t } from './i18n.js';
import { get, post, put, del, enc, ApiError } from './api.js';

const BASE_TYPES = ['user_id', 'email', 'phone', 'member_card', 'anonymous_id', 'device_id', 'wechat_openid', 'wechat_unionid'];

/// The identifier types to try for what was typed, most likely first.
function typesFor(value, known) {
  const all = [...new Set([...BASE_TYPES, ...known])];
  let first;
  if (value.includes('@')) first = ['email'];
  else if (/^\+?[\d\s()-]{6,}$/.test(value)) first = ['phone', 'member_card', 'user_id'];
  else first = ['user_id', 'member_card', 'anonymous_id'];
  return [...new Set([...first, ...all])];
}

/// Finds the profile holding `value` under `type`, or under any identifier type (or a profile id).
async function find(value, type) {
  if (type) return get('/v1/profiles/lookup', { type, value });
  if (/^p_[0-9a-z]+$/i.test(value)) {
    try { return await get(`/v1/profiles/${enc(value)}`); } catch (e) { if (e.status !== 404) throw e; }
  }
  let known = [];
  try { known = Object.keys((await get('/v1/identity/rules')).types || {}); } catch { /* the defaults */ }
  for (const type of typesFor(value, known)) {
    try {
      return await get('/v1/profiles/lookup', { type, value });
    } catch (e) {
      if (e.status !== 404 && e.status !== 400) throw e;
    }
  }
  throw new ApiError(404, { error: { message: t('customer.notfound', { value }) } });
}

export function CustomerPage({ arg, can }) {
  const [query, setQuery] = useState('');
  const [type, setType] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const v = query.trim();
    if (!v) return;
    setBusy(true);
    setError(null);
    try {
      const found = await find(v, type);
      location.hash = `#/customer/${enc(found.profile_id)}`;
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="page">
    <header class="page-head"><h1>${t('customer.title')}</h1></header>
    <form class="search" onSubmit=${submit} role="search">
      <label for="find">${t('customer.find')}</label>
      <input id="find" value=${query} placeholder=${t('customer.placeholder')} onInput=${(e) => setQuery(e.target.value)} />
      <select aria-label=${t('customer.idType')} value=${type} onChange=${(e) => setType(e.target.value)}>
        <option value="">${t('customer.anyType')}</option>
        ${BASE_TYPES.map((ty) => html`<option value=${ty}>${ty}</option>`)}
      </select>
      <button type="submit" disabled=${busy}>${t('customer.search')}</button>
    </form>
    <${ErrorBox} error=${error} />
    ${arg ? html`<${Profile} id=${arg} can=${can} key=${arg} />` : html`<p class="muted">${t('customer.intro')}</p>`}
  </div>`;
}

function Profile({ id, can }) {
  const view = useLoad(() => get(`/v1/profiles/${enc(id)}`), [id]);
  const member = useLoad(() => get(`/v1/profiles/${enc(id)}/memberships`), [id]);
  if (view.loading && !view.data) return html`<${Loading} />`;
  if (view.error) return html`<${ErrorBox} error=${view.error} />`;
  const p = view.data;
  const reload = () => { view.reload(); member.reload(); };
  const name = p.traits.name?.value || p.traits.first_name?.value || p.profile_id;
  return html`<div class="profile" data-testid="profile">
    <div class="profile-head">
      <div class="avatar">${String(name).slice(0, 1).toUpperCase()}</div>
      <div>
        <h2>${name}</h2>
        <div class="muted"><code>${p.profile_id}</code>
          ${p.merged_away && html` · ${t('customer.mergedAway', { id: p.requested_id })}`}
          ${p.matched && html` · ${t('customer.matched', { type: p.matched.type, value: p.matched.value })}`}</div>
      </div>
      <dl class="facts">
        <div><dt>${t('customer.firstSeen')}</dt><dd>${fmtTime(p.first_seen)}</dd></div>
        <div><dt>${t('customer.lastSeen')}</dt><dd>${fmtTime(p.last_seen)}</dd></div>
        <div><dt>${t('customer.events')}</dt><dd>${fmtNumber(p.event_counts?.total)}</dd></div>
        <div><dt>${t('customer.reachable')}</dt><dd>${(p.reachable || []).map((c) => t('channel.' + c)).join(' · ') || '—'}</dd></div>
      </dl>
    </div>
    <div class="grid">
      <${Tags} p=${p} can=${can} onChange=${reload} />
      <${Segments} member=${member} />
      <${Identifiers} p=${p} />
      <${Traits} p=${p} />
      <${Computed} p=${p} />
      <${Consent} p=${p} can=${can} onChange=${reload} />
      <${Counts} p=${p} />
      <${Why} id=${p.profile_id} />
      <${Timeline} id=${p.profile_id} />
      <${History} id=${p.profile_id} member=${member} />
    </div>
  </div>`;
}

/// The manual tags staff may set, read once a minute, and only when someone opens the form to add one
/// (`GET /v1/tags` answers every tag's population too: no cost to put on every profile shown).
let manualTags = null;
function loadManualTags() {
  if (!manualTags || Date.now() - manualTags.at > 60000) {
    const names = get('/v1/tags').then((d) => d.items.filter((x) => x.definition?.type === 'manual').map((x) => x.name));
    manualTags = { at: Date.now(), names };
    names.catch(() => { manualTags = null; });
  }
  return manualTags.names;
}

function Tags({ p, can, onChange }) {
  const tags = Object.entries(p.tags || {});
  const [manual, setManual] = useState(null);
  const [tag, setTag] = useState('');
  const [value, setValue] = useState('');
  const [error, setError] = useState(null);
  const open = async () => {
    setError(null);
    try { setManual(await loadManualTags()); } catch (err) { setError(err); }
  };
  const add = async (e) => {
    e.preventDefault();
    const name = tag || manual[0];
    if (!name) return;
    setError(null);
    try {
      await post(`/v1/profiles/${enc(p.profile_id)}/tags/${enc(name)}`, value ? { value } : {});
      setValue('');
      onChange();
    } catch (err) { setError(err); }
  };
  const remove = async (name) => {
    setError(null);
    try { await del(`/v1/profiles/${enc(p.profile_id)}/tags/${enc(name)}`); onChange(); } catch (err) { setError(err); }
  };
  return html`<${Card} title=${t('customer.tags')} id="tags">
    <div class="chips" data-testid="tags">${tags.length ? tags.map(([name, v]) => html`
      <${Chip} kind=${v.manual ? 'manual' : 'tag'} title=${`${t('customer.changedAt')} ${fmtTime(v.changed_at)}${v.caused_by ? ' · ' + v.caused_by : ''}`}>
        <b>${name}</b>${v.value !== true ? html`: ${fmtValue(v.value)}` : ''}
        ${can.write && v.manual && html`<button class="x" title=${t('customer.removeTag')} onClick=${() => remove(name)}>×</button>`}
      </${Chip}>`) : html`<${Empty} />`}</div>
    ${can.write && html`<div data-testid="add-tag">${manual === null
      ? html`<button class="ghost small" onClick=${open}>+ ${t('customer.addTag')}</button>`
      : manual.length === 0 ? html`<p class="muted small">${t('customer.noManualTags')}</p>`
      : html`<form class="inline" onSubmit=${add}>
        <select aria-label=${t('customer.tagName')} value=${tag || manual[0]} onChange=${(e) => setTag(e.target.value)}>${manual.map((m) => html`<option value=${m}>${m}</option>`)}</select>
        <input aria-label=${t('customer.tagValue')} placeholder=${t('customer.tagValue')} value=${value} onInput=${(e) => setValue(e.target.value)} />
        <button type="submit">${t('customer.addTag')}</button>
      </form>`}</div>`}
    <${ErrorBox} error=${error} />
  </${Card}>`;
}

function Segments({ member }) {
  const segs = member.data?.segments || [];
  return html`<${Card} title=${t('customer.segments')} id="segments">
    ${member.loading && !member.data ? html`<${Loading} />` : html`<div class="chips" data-testid="segments">${segs.length ? segs.map((s) => html`
      <${Chip} kind="segment" title=${`${t('customer.since')} ${fmtTime(s.since)}`}><b>${s.segment}</b> <small>${t('customer.since')} ${fmtTime(s.since)}</small></${Chip}>`) : html`<${Empty} />`}</div>`}
    <${ErrorBox} error=${member.error} />
  </${Card}>`;
}

function Identifiers({ p }) {
  return html`<${Card} title=${t('customer.identifiers')} id="identifiers">
    <${Table} testid="identifiers" rows=${p.identifiers} columns=${[
      { label: t('customer.type'), render: (r) => html`<code>${r.type}</code>` },
      { label: t('customer.value'), render: (r) => r.value },
      { label: t('customer.firstSeen'), render: (r) => fmtTime(r.first_seen) },
      { label: t('customer.lastSeen'), render: (r) => fmtTime(r.last_seen) },
    ]} />
  </${Card}>`;
}

function Traits({ p }) {
  const rows = Object.entries(p.traits || {}).map(([name, v]) => ({ name, ...v }));
  return html`<${Card} title=${t('customer.traits')} id="traits">
    <${Table} rows=${rows} columns=${[
      { label: t('customer.trait'), render: (r) => html`<code>${r.name}</code>` },
      { label: t('customer.value'), render: (r) => r.invalid
        ? html`${fmtValue(r.value)} <${Chip} kind="warn" title=${t('customer.invalidIdentifier')}>${r.invalid}</${Chip}>`
        : fmtValue(r.value) },
      { label: t('customer.source'), render: (r) => r.channel || '—' },
      { label: t('customer.setAt'), render: (r) => fmtTime(r.set_at) },
    ]} />
  </${Card}>`;
}

function Computed({ p }) {
  const rows = Object.entries(p.computed_traits || {}).map(([name, v]) => ({ name, ...v }));
  return html`<${Card} title=${t('customer.computed')} id="computed">
    <${Table} rows=${rows} columns=${[
      { label: t('customer.trait'), render: (r) => html`<code>${r.name}</code>` },
      { label: t('customer.value'), render: (r) => fmtValue(r.value), num: true },
      { label: t('customer.lastEvent'), render: (r) => fmtTime(r.last_event_at) },
      { label: t('customer.state'), render: (r) => (r.complete ? t('customer.complete') : t('customer.backfilling')) },
    ]} />
  </${Card}>`;
}

const CHANNELS = ['sms', 'email', 'push', 'wechat', 'phone'];

function Consent({ p, can, onChange }) {
  const [error, setError] = useState(null);
  const rows = [];
  for (const channel of CHANNELS) {
    const purposes = (p.consent || {})[channel] || {};
    const entries = Object.entries(purposes);
    if (!entries.length) rows.push({ channel, purpose: 'marketing', none: true });
    for (const [purpose, s] of entries) rows.push({ channel, purpose, ...s });
  }
  const set = async (r, granted) => {
    setError(null);
    try {
      await put(`/v1/profiles/${enc(p.profile_id)}/consent`, { channel: r.channel, purpose: r.purpose, granted, source: 'console' });
      onChange();
    } catch (err) { setError(err); }
  };
  const cols = [
    { label: t('customer.channel'), render: (r) => t('channel.' + r.channel) },
    { label: t('customer.purpose'), render: (r) => t('purpose.' + r.purpose) },
    { label: t('customer.consent'), render: (r) => (r.none ? html`<span class="muted">${t('customer.noChoice')}</span>` : r.granted ? html`<${Chip} kind="ok">${t('customer.granted')}</${Chip}>` : html`<${Chip} kind="bad">${t('customer.revoked')}</${Chip}>`) },
    { label: t('customer.source'), render: (r) => (r.none ? '—' : `${r.source || '—'} · ${fmtTime(r.at)}${r.revoked_by?.length ? ' · ' + t('customer.revokedBy', { ids: r.revoked_by.join(', ') }) : ''}`) },
  ];
  if (can.write) cols.push({ label: '', render: (r) => html`<button class="small ghost" onClick=${() => set(r, !(r.granted && !r.none))}>${r.granted && !r.none ? t('customer.revoke') : t('customer.grant')}</button>` });
  return html`<${Card} title=${t('customer.consentTitle')} id="consent">
    <${Table} rows=${rows} columns=${cols} />
    <${ErrorBox} error=${error} />
  </${Card}>`;
}

function Counts({ p }) {
  const c = p.event_counts || {};
  const list = (o) => Object.entries(o || {}).sort((a, b) => b[1] - a[1]);
  return html`<${Card} title=${t('customer.counts')} id="counts">
    <div class="counts">
      ${[['customer.byEvent', c.by_event], ['customer.byChannel', c.by_channel], ['customer.byType', c.by_type]].map(([k, o]) => html`
        <div><h3>${t(k)}</h3>${list(o).length ? html`<ul class="kv">${list(o).map(([n, v]) => html`<li><span>${n}</span><b>${fmtNumber(v)}</b></li>`)}</ul>` : html`<${Empty} />`}</div>`)}
    </div>
  </${Card}>`;
}

function decisionText(d) {
  const id = (x) => (x ? `${x.id_type || x.type}:${x.value}` : '');
  switch (d.kind) {
    case 'profile_created': return t('why.created', { p: d.profile });
    case 'identifier_linked': return t('why.linked', { id: `${d.id_type}:${d.value}`, p: d.profile });
    case 'profiles_merged': return d.via ? t('why.mergedVia', { a: d.absorbed, s: d.survivor, id: id(d.via) }) : t('why.mergedBy', { a: d.absorbed, s: d.survivor, reason: d.reason || '' });
    case 'profile_split': return t('why.split', { ids: (d.identifiers || []).map(id).join(', '), from: d.from, into: d.into, reason: d.reason });
    case 'merge_rejected': return t('why.mergeRejected', { ps: (d.profiles || []).join(', '), reason: fmtValue(d.reason), ids: (d.evidence || []).map(id).join(', ') });
    case 'link_rejected': return t('why.linkRejected', { id: `${d.id_type}:${d.value}`, reason: fmtValue(d.reason) });
    case 'command_rejected': return t('why.commandRejected', { reason: d.reason });
    default: return d.kind;
  }
}

export { decisionText };

function Why({ id }) {
  const why = useLoad(() => get(`/v1/profiles/${enc(id)}/identity`), [id]);
  const d = why.data;
  const conflicts = (d?.decisions || []).filter((x) => x.kind === 'merge_rejected' || x.kind === 'link_rejected');
  return html`<${Card} title=${t('customer.why')} id="why" wide>
    ${why.loading && !d ? html`<${Loading} />` : d && html`
      <p>${d.merged_profiles.length ? t('why.summaryMerged', { n: d.merged_profiles.length, ids: d.merged_profiles.join(', ') }) : t('why.summaryOne')}</p>
      <div class="cols3">
        <div><h3>${t('why.identifiers')}</h3><ul class="timeline-list">${d.identifiers.map((i) => html`
          <li><code>${i.type}:${i.value}</code><br /><small class="muted">${i.linked_by ? `${t('why.by')} ${i.linked_by.caused_by} · ${fmtTime(i.linked_by.recorded_at)} · ${t('why.rule', { v: i.linked_by.rule_version })}` : ''}${i.moved_by ? ` · ${t('why.movedBy', { reason: i.moved_by.reason })}` : ''}</small></li>`)}</ul></div>
        <div><h3>${t('why.merges')}</h3>${d.merges.length ? html`<ul class="timeline-list">${d.merges.map((m) => html`<li>${decisionText(m)}<br /><small class="muted">${m.caused_by} · ${fmtTime(m.recorded_at)}</small></li>`)}</ul>` : html`<${Empty} />`}</div>
        <div><h3>${t('why.conflicts')}</h3>${conflicts.length ? html`<ul class="timeline-list">${conflicts.map((m) => html`<li>${decisionText(m)}<br /><small class="muted">${m.caused_by} · ${fmtTime(m.recorded_at)}</small></li>`)}</ul>` : html`<${Empty} />`}</div>
      </div>`}
    <${ErrorBox} error=${why.error} />
  </${Card}>`;
}

function Timeline({ id }) {
  const paged = usePaged(async (before) => {
    const page = await get(`/v1/profiles/${enc(id)}/events`, { limit: 15, before });
    return { items: page.items, next: page.next_before };
  }, [id]);
  return html`<${Card} title=${t('customer.timeline')} id="timeline" wide actions=${html`<${Pager} paged=${paged} />`}>
    ${paged.items === null ? html`<${Loading} />` : html`<${Table} testid="timeline" rows=${paged.items} columns=${[
      { label: t('customer.when'), render: (r) => fmtTime(r.timestamp) },
      { label: t('customer.type'), render: (r) => html`<code>${r.type}</code>` },
      { label: t('customer.event'), render: (r) => r.name || '—' },
      { label: t('customer.channel'), render: (r) => r.channel || '—' },
      { label: t('customer.details'), render: (r) => html`<details><summary>${r.message_id}</summary><pre>${JSON.stringify(r.message?.properties || r.message?.traits || r.message, null, 1)}</pre></details>` },
    ]} />`}
    <${ErrorBox} error=${paged.error} />
  </${Card}>`;
}

function toLocalInput(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function History({ id, member }) {
  const [at, setAt] = useState('');
  const [asOf, setAsOf] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!at) { setAsOf(null); return; }
    const when = new Date(at);
    if (isNaN(when)) return;
    setError(null);
    get(`/v1/profiles/${enc(id)}/memberships`, { at: when.toISOString() }).then(setAsOf, setError);
  }, [at, id]);
  const history = useListPages(member.data ? [...member.data.history].reverse() : null, 20);
  return html`<${Card} title=${t('customer.history')} id="history" wide actions=${html`<${Pager} paged=${history} />`}>
    <div class="inline">
      <label for="at">${t('customer.at')}</label>
      <input id="at" type="datetime-local" value=${at} onInput=${(e) => setAt(e.target.value)} />
      <button class="ghost small" onClick=${() => setAt(toLocalInput(new Date(Date.now() - 86400000)))}>${t('customer.yesterday')}</button>
      ${at && html`<button class="ghost small" onClick=${() => setAt('')}>${t('common.clear')}</button>`}
    </div>
    ${asOf && html`<div class="asof" data-testid="as-of">
      <div><h3>${t('customer.recordedAt')}</h3><div class="chips">${asOf.segments_at.length ? asOf.segments_at.map((s) => html`<${Chip} kind="segment">${s.segment}</${Chip}>`) : html`<${Empty} />`}</div></div>
      <div><h3>${t('customer.byEventTime')}</h3><div class="chips">${asOf.by_event_time.segments.length ? asOf.by_event_time.segments.map((s) => html`<${Chip} kind="segment">${typeof s === 'string' ? s : s.segment || JSON.stringify(s)}</${Chip}>`) : html`<${Empty} />`}</div>
        <small class="muted">${t('customer.eventsUpTo', { n: asOf.by_event_time.events })}${asOf.by_event_time.latest_event ? ` · ${asOf.by_event_time.latest_event.event} ${fmtTime(asOf.by_event_time.latest_event.timestamp)}` : ''}</small></div>
    </div>`}
    <${ErrorBox} error=${error} />
    <${Table} testid="membership-history" rows=${history.items || []} columns=${[
      { label: t('customer.when'), render: (r) => fmtTime(r.at) },
      { label: t('customer.segment'), render: (r) => html`<code>${r.segment}</code>` },
      { label: t('customer.change'), render: (r) => html`<${Chip} kind=${r.change === 'entered' ? 'ok' : 'bad'}>${t('change.' + r.change)}</${Chip}>` },
      { label: t('customer.cause'), render: (r) => html`<small>${r.caused_by || '—'}</small>` },
    ]} />
  </${Card}>`;
}
