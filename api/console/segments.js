// The segment builder: conditions on traits, computed traits, tags, events (with a property filter, a
// count or an aggregate, and a window), sequences, consent and other segments, combined with all / any /
// not, built from `GET /v1/schema`. Every change previews the definition (`POST /v1/segments/preview`,
// debounced, one request): count, totals, a sample, the overlap with saved segments and the breakdown
// by up to two chosen fields (members and spend per value). Admins save it; anyone exports a segment's
// members as CSV with the fields they choose.

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { html, Card, Table, Chip, Empty, ErrorBox, Loading, Bars, Pager, RFM_ORDER, inOrder, colour, usePaged, useLoad, fmtNumber, fmtMoney, fmtTime, fmtValue } from './ui.js';
import { t } from './i18n.js';
import { call, get, post, put, enc } from './api.js';

const NO_VALUE = ['is_set', 'is_not_set', 'is_true', 'is_false'];
const NUMERIC = ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'between', 'in', 'not_in'];
const FUNCTIONS = ['sum', 'min', 'max', 'average', 'distinct_count'];
const KINDS = ['trait', 'computed', 'tag', 'event', 'sequence', 'consent', 'segment', 'group'];

let nextId = 1;
export const blank = (kind) => {
  const base = { id: nextId++, kind, not: false };
  switch (kind) {
    case 'group': return { ...base, op: 'any', items: [blank('trait')] };
    case 'event': return { ...base, event: '', measure: 'count', countOp: 'gte', countValue: '1', fn: 'sum', property: '', window: '', whereProp: '', whereOp: 'eq', whereValue: '' };
    case 'sequence': return { ...base, first: '', second: '', absent: true, within: '2h' };
    case 'consent': return { ...base, channel: 'sms', purpose: 'marketing' };
    case 'segment': return { ...base, segment: '' };
    default: return { ...base, field: '', op: '', value: '' };
  }
};

/// The type of a field for its operators.
function fieldType(schema, kind, field) {
  if (kind === 'tag') return 'string';
  const list = kind === 'trait' ? schema.traits : schema.computed_traits;
  return (list || []).find((f) => f.name === field)?.type || 'string';
}

function operand(type, op, raw) {
  if (NO_VALUE.includes(op)) return undefined;
  const num = (s) => (type === 'number' && s.trim() !== '' && !isNaN(Number(s)) ? Number(s) : s.trim());
  if (op === 'in' || op === 'not_in' || op.startsWith('contains_')) return raw.split(',').map(num).filter((x) => x !== '');
  if (op === 'between') return raw.split(',').slice(0, 2).map(num);
  if (op === 'within_last' || op === 'not_within_last') return raw.trim();
  return num(raw);
}

/// The API's JSON for a condition of the builder, or null while it is incomplete.
export function toJson(c, schema) {
  let out = null;
  switch (c.kind) {
    case 'group': {
      const parts = c.items.map((i) => toJson(i, schema)).filter(Boolean);
      if (!parts.length) return null;
      out = parts.length === 1 && !c.not ? parts[0] : { [c.op]: parts };
      break;
    }
    case 'trait': case 'computed': case 'tag': {
      if (!c.field || !c.op) return null;
      const type = fieldType(schema, c.kind, c.field);
      const value = operand(type, c.op, c.value);
      if (value !== undefined && (value === '' || (Array.isArray(value) && !value.length))) return null;
      out = { [c.kind]: c.field, op: c.op };
      if (value !== undefined) out.value = value;
      break;
    }
    case 'event': {
      if (!c.event) return null;
      out = { event: c.event };
      if (c.whereProp && (NO_VALUE.includes(c.whereOp) || c.whereValue !== '')) {
        const type = (schema.events.find((e) => e.name === c.event)?.properties || []).find((p) => p.name === c.whereProp)?.type || 'string';
        const w = { property: c.whereProp, op: c.whereOp };
        const v = operand(type, c.whereOp, c.whereValue);
        if (v !== undefined) w.value = v;
        out.where = [w];
      }
      if (c.measure === 'count') {
        if (c.countValue === '') return null;
        out.count = { op: c.countOp, value: operand('number', c.countOp, c.countValue) };
      } else {
        if (!c.property || c.countValue === '') return null;
        out.aggregate = { function: c.fn, property: c.property };
        out.op = c.countOp;
        out.value = operand('number', c.countOp, c.countValue);
      }
      if (c.window.trim()) out.window = c.window.trim();
      break;
    }
    case 'sequence':
      if (!c.first || !c.second || !c.within.trim()) return null;
      out = { sequence: [{ event: c.first }, c.absent ? { not_event: c.second } : { event: c.second }], within: c.within.trim() };
      break;
    case 'consent':
      out = { consent: { channel: c.channel, purpose: c.purpose } };
      break;
    case 'segment':
      if (!c.segment) return null;
      out = { segment: c.segment };
      break;
    default: return null;
  }
  if (c.kind === 'group' && c.not && out) return { not: out.all || out.any ? out : { [c.op]: [out] } };
  return c.not ? { not: out } : out;
}

/// A saved definition back into the builder (what it cannot show becomes null: the JSON is shown instead).
function fromJson(j) {
  if (!j || typeof j !== 'object') return null;
  if (j.not) { const inner = fromJson(j.not); if (inner) inner.not = !inner.not; return inner; }
  if (j.all || j.any) {
    const items = (j.all || j.any).map(fromJson);
    if (items.some((i) => !i)) return null;
    return { ...blank('group'), op: j.all ? 'all' : 'any', items };
  }
  for (const kind of ['trait', 'computed', 'tag']) {
    if (typeof j[kind] === 'string') {
      const v = j.value;
      return { ...blank(kind), field: j[kind], op: j.op, value: v === undefined || v === null ? '' : Array.isArray(v) ? v.join(',') : String(v) };
    }
  }
  if (j.segment) return { ...blank('segment'), segment: j.segment };
  if (j.consent) return { ...blank('consent'), channel: j.consent.channel || j.consent, purpose: j.consent.purpose || 'marketing' };
  if (j.sequence) {
    const [a, b] = j.sequence;
    return { ...blank('sequence'), first: a.event, second: b.event || b.not_event, absent: !!b.not_event, within: j.within };
  }
  if (j.event) {
    const c = { ...blank('event'), event: j.event, window: j.window || '' };
    const w = (j.where || [])[0];
    if (w) Object.assign(c, { whereProp: w.property, whereOp: w.op, whereValue: w.value === undefined ? '' : Array.isArray(w.value) ? w.value.join(',') : String(w.value) });
    if (j.aggregate) Object.assign(c, { measure: 'aggregate', fn: j.aggregate.function, property: j.aggregate.property, countOp: j.op, countValue: String(j.value) });
    else if (j.count) Object.assign(c, { countOp: j.count.op, countValue: String(j.count.value) });
    else Object.assign(c, { countOp: 'gte', countValue: '1' });
    return c;
  }
  return null;
}

function Select({ label, value, options, onChange, testid }) {
  return html`<select aria-label=${label} title=${label} value=${value} data-testid=${testid} onChange=${(e) => onChange(e.target.value)}>
    ${options.map((o) => (Array.isArray(o) ? html`<option value=${o[0]}>${o[1]}</option>` : html`<option value=${o}>${o}</option>`))}
  </select>`;
}

function ValueInput({ type, op, value, onChange, candidates, listId }) {
  if (NO_VALUE.includes(op)) return null;
  const hint = op === 'between' ? t('builder.betweenHint') : op === 'in' || op === 'not_in' || (op || '').startsWith('contains_') ? t('builder.listHint') : op === 'within_last' || op === 'not_within_last' ? '7d' : type === 'time' ? '2025-01-31T00:00:00Z' : '';
  return html`<span class="value">
    <input aria-label=${t('builder.value')} placeholder=${hint || t('builder.value')} value=${value} list=${candidates && candidates.length ? listId : undefined}
      onInput=${(e) => onChange(e.target.value)} />
    ${candidates && candidates.length > 0 && html`<datalist id=${listId}>${candidates.map((c) => html`<option value=${c.value}>${c.label || (c.seen || c.profiles ? `${c.value} (${fmtNumber(c.seen || c.profiles)})` : c.value)}</option>`)}</datalist>`}
  </span>`;
}

function Condition({ c, schema, onChange, onRemove, depth }) {
  const set = (patch) => onChange({ ...c, ...patch });
  const kindSelect = html`<${Select} label=${t('builder.kind')} testid="kind" value=${c.kind}
    options=${KINDS.filter((k) => k !== 'group' || depth < 2).map((k) => [k, t('kind.' + k)])}
    onChange=${(k) => onChange({ ...blank(k), id: c.id, not: c.not })} />`;
  const notBox = html`<label class="not"><input type="checkbox" checked=${c.not} onChange=${(e) => set({ not: e.target.checked })} /> ${t('builder.not')}</label>`;
  let body = null;
  if (c.kind === 'group') {
    return html`<div class="cond group-cond">
      <div class="cond-row">${kindSelect}${notBox}<button class="x" title=${t('builder.remove')} onClick=${onRemove}>×</button></div>
      <${Group} g=${c} schema=${schema} onChange=${onChange} depth=${depth + 1} />
    </div>`;
  }
  if (c.kind === 'trait' || c.kind === 'computed' || c.kind === 'tag') {
    const list = c.kind === 'trait' ? schema.traits : c.kind === 'computed' ? schema.computed_traits : schema.tags;
    const type = fieldType(schema, c.kind, c.field);
    const ops = c.kind === 'tag' ? ['eq', 'neq', 'in', 'not_in', 'is_set', 'is_not_set'] : schema.operators[type] || schema.operators.string;
    const entry = list.find((f) => f.name === c.field);
    body = html`
      <${Select} label=${t('builder.field')} testid="field" value=${c.field} options=${[['', t('builder.chooseField')], ...list.map((f) => [f.name, f.name])]}
        onChange=${(field) => { const ty = fieldType(schema, c.kind, field); const o = c.kind === 'tag' ? ['eq'] : schema.operators[ty] || ['eq']; set({ field, op: o.includes(c.op) ? c.op : o[0], value: '' }); }} />
      ${c.field && html`<${Select} label=${t('builder.operator')} testid="op" value=${c.op} options=${ops.map((o) => [o, t('op.' + o)])} onChange=${(op) => set({ op })} />
      <${ValueInput} type=${type} op=${c.op} value=${c.value} onChange=${(value) => set({ value })} candidates=${entry?.candidates} listId=${'cand' + c.id} />`}`;
  } else if (c.kind === 'event') {
    const ev = schema.events.find((e) => e.name === c.event);
    const props = ev?.properties || [];
    const numProps = props.filter((p) => p.type === 'number');
    const whereProp = props.find((p) => p.name === c.whereProp);
    body = html`
      <${Select} label=${t('builder.event')} testid="event" value=${c.event} options=${[['', t('builder.chooseEvent')], ...schema.events.map((e) => [e.name, e.name])]} onChange=${(event) => set({ event, whereProp: '', property: '' })} />
      ${c.event && html`
        <${Select} label=${t('builder.measure')} value=${c.measure} options=${[['count', t('builder.countTimes')], ['aggregate', t('builder.aggregate')]]} onChange=${(measure) => set({ measure })} />
        ${c.measure === 'aggregate' && html`
          <${Select} label=${t('builder.function')} value=${c.fn} options=${FUNCTIONS.map((f) => [f, t('fn.' + f)])} onChange=${(fn) => set({ fn })} />
          <${Select} label=${t('builder.property')} value=${c.property} options=${[['', t('builder.chooseProperty')], ...(numProps.length ? numProps : props).map((p) => [p.name, p.name])]} onChange=${(property) => set({ property })} />`}
        <${Select} label=${t('builder.operator')} value=${c.countOp} options=${NUMERIC.map((o) => [o, t('op.' + o)])} onChange=${(countOp) => set({ countOp })} />
        <input class="short" aria-label=${t('builder.times')} value=${c.countValue} onInput=${(e) => set({ countValue: e.target.value })} />
        <input class="short" aria-label=${t('builder.window')} placeholder=${t('builder.windowHint')} value=${c.window} onInput=${(e) => set({ window: e.target.value })} />
        <span class="where">${t('builder.where')}
          <${Select} label=${t('builder.property')} value=${c.whereProp} options=${[['', t('builder.anyProperty')], ...props.map((p) => [p.name, p.name])]} onChange=${(whereProp) => set({ whereProp })} />
          ${c.whereProp && html`<${Select} label=${t('builder.operator')} value=${c.whereOp} options=${(schema.operators[whereProp?.type] || schema.operators.string).map((o) => [o, t('op.' + o)])} onChange=${(whereOp) => set({ whereOp })} />
          <${ValueInput} type=${whereProp?.type} op=${c.whereOp} value=${c.whereValue} onChange=${(whereValue) => set({ whereValue })} candidates=${whereProp?.candidates} listId=${'wcand' + c.id} />`}
        </span>`}`;
  } else if (c.kind === 'sequence') {
    const events = [['', t('builder.chooseEvent')], ...schema.events.map((e) => [e.name, e.name])];
    body = html`
      <${Select} label=${t('builder.first')} value=${c.first} options=${events} onChange=${(first) => set({ first })} />
      <${Select} label=${t('builder.then')} value=${c.absent ? 'not' : 'then'} options=${[['then', t('builder.thenDid')], ['not', t('builder.thenNot')]]} onChange=${(v) => set({ absent: v === 'not' })} />
      <${Select} label=${t('builder.second')} value=${c.second} options=${events} onChange=${(second) => set({ second })} />
      <span>${t('builder.within')}</span><input class="short" aria-label=${t('builder.within')} value=${c.within} onInput=${(e) => set({ within: e.target.value })} />`;
  } else if (c.kind === 'consent') {
    body = html`
      <${Select} label=${t('customer.channel')} value=${c.channel} options=${schema.consent.channels.map((ch) => [ch, t('channel.' + ch)])} onChange=${(channel) => set({ channel })} />
      <${Select} label=${t('customer.purpose')} value=${c.purpose} options=${schema.consent.purposes.map((p) => [p, t('purpose.' + p)])} onChange=${(purpose) => set({ purpose })} />`;
  } else if (c.kind === 'segment') {
    body = html`<${Select} label=${t('builder.segment')} value=${c.segment} options=${[['', t('builder.chooseSegment')], ...schema.segments.map((s) => [s.id, `${s.id} — ${s.name || ''}`])]} onChange=${(segment) => set({ segment })} />`;
  }
  return html`<div class="cond" data-testid="condition">
    <div class="cond-row">${kindSelect}${notBox}${body}<button class="x" title=${t('builder.remove')} onClick=${onRemove}>×</button></div>
  </div>`;
}

function Group({ g, schema, onChange, depth }) {
  const update = (i, c) => onChange({ ...g, items: g.items.map((x, j) => (j === i ? c : x)) });
  const remove = (i) => onChange({ ...g, items: g.items.filter((_, j) => j !== i) });
  return html`<div class=${'group depth' + depth}>
    <div class="group-head">
      <${Select} label=${t('builder.combine')} testid=${depth === 0 ? 'combine' : undefined} value=${g.op} options=${[['all', t('builder.all')], ['any', t('builder.any')]]} onChange=${(op) => onChange({ ...g, op })} />
    </div>
    ${g.items.map((c, i) => html`<${Condition} key=${c.id} c=${c} schema=${schema} depth=${depth} onChange=${(n) => update(i, n)} onRemove=${() => remove(i)} />`)}
    <button class="ghost small" onClick=${() => onChange({ ...g, items: [...g.items, blank('trait')] })}>+ ${t('builder.add')}</button>
  </div>`;
}

/// What the preview can break members down by: every tag, and the traits and computed traits whose
/// values are words (a number has as many groups as values).
function breakdownOptions(schema) {
  const words = (f) => f.type === 'string' || f.type === 'boolean';
  return [
    ...schema.tags.map((f) => ['tag:' + f.name, `${t('kind.tag')}: ${f.name}`]),
    ...schema.traits.filter(words).map((f) => ['trait:' + f.name, `${t('kind.trait')}: ${f.name}`]),
    ...schema.computed_traits.filter(words).map((f) => ['computed:' + f.name, `${t('kind.computed')}: ${f.name}`]),
  ];
}

/// `tag:rfm` as the API names a breakdown field: `{"tag": "rfm"}`.
export function breakdownField(choice) {
  const at = choice.indexOf(':');
  return { [choice.slice(0, at)]: choice.slice(at + 1) };
}

/// The field to break down by first when nothing is chosen: the RFM groups if the workspace has them.
function defaultBreakdown(schema) {
  const rfm = schema.tags.find((f) => f.kind === 'rfm');
  return rfm ? 'tag:' + rfm.name : '';
}

const label = (v) => (v === null || v === undefined ? t('builder.noValue') : fmtValue(v));
const key = (v) => JSON.stringify(v ?? null);

/// The order to show a field's values in: the RFM groups' own, else none (the largest first).
function valueOrder(schema, field) {
  const tag = field.tag ?? field.trait;
  return schema.tags.some((f) => f.name === tag && f.kind === 'rfm') && !field.computed ? RFM_ORDER : [];
}

/// The preview's `breakdown` (members and spend per value of one field, or per pair of values of two):
/// bars for one field, a table of the first field's values against the second's for two. Every group
/// carries its values, members and spend as data attributes (the browser test compares them with the API).
function Breakdown({ breakdown, schema }) {
  const orders = breakdown.fields.map((f) => valueOrder(schema, f));
  const groups = inOrder(breakdown.groups, orders[0], (g) => g.values[0], (a, b) => b.count - a.count);
  const attrs = (g) => ({ 'data-group': '', 'data-values': JSON.stringify(g.values), 'data-count': g.count, 'data-spend': g.spend });
  const shown = breakdown.total_groups > groups.length
    ? html`<p class="muted small">${t('builder.groupsShown', { n: fmtNumber(groups.length), total: fmtNumber(breakdown.total_groups) })}</p>` : '';
  if (!groups.length) return html`<div data-testid="breakdown" data-fields=${JSON.stringify(breakdown.fields)}><${Empty} /></div>`;
  if (breakdown.fields.length === 1) {
    const max = Math.max(1, ...groups.map((g) => g.count));
    return html`<div class="bars" data-testid="breakdown" data-fields=${JSON.stringify(breakdown.fields)}>${groups.map((g, i) => html`
      <div class="bar-row" key=${key(g.values)} ...${attrs(g)}>
        <span class="bar-label" title=${label(g.values[0])}>${label(g.values[0])}</span>
        <svg class="bar-svg" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
          <rect x="0" y="1" width=${Math.max(0.5, (100 * g.count) / max)} height="8" rx="1" fill=${colour(i)} />
        </svg>
        <span class="bar-value">${fmtNumber(g.count)} <small>${fmtMoney(g.spend)}</small></span>
      </div>`)}${shown}</div>`;
  }
  // Rows and columns in the order of their members in all, the largest first.
  const order = (i) => {
    const totals = new Map();
    for (const g of groups) totals.set(key(g.values[i]), [g.values[i], (totals.get(key(g.values[i]))?.[1] || 0) + g.count]);
    return inOrder([...totals.values()], orders[i], (v) => v[0], (a, b) => b[1] - a[1]);
  };
  const rows = order(0);
  const cols = order(1);
  const cell = new Map(groups.map((g) => [key(g.values[0]) + '\u0000' + key(g.values[1]), g]));
  const max = Math.max(1, ...groups.map((g) => g.count));
  return html`<div class="table-wrap" data-testid="breakdown" data-fields=${JSON.stringify(breakdown.fields)}><table class="crosstab">
    <thead><tr><th></th>${cols.map(([v, n]) => html`<th class="num" title=${fmtNumber(n)}>${label(v)}</th>`)}<th class="num">${t('builder.total')}</th></tr></thead>
    <tbody>${rows.map(([r, n]) => html`<tr key=${key(r)}>
      <th>${label(r)}</th>
      ${cols.map(([c]) => {
        const g = cell.get(key(r) + '\u0000' + key(c));
        if (!g) return html`<td class="num muted">·</td>`;
        return html`<td class=${'num heat' + Math.min(5, Math.ceil((5 * g.count) / max))} ...${attrs(g)}><b>${fmtNumber(g.count)}</b><br /><small>${fmtMoney(g.spend)}</small></td>`;
      })}
      <td class="num"><b>${fmtNumber(n)}</b></td>
    </tr>`)}</tbody>
  </table>${shown}</div>`;
}

/// Previews `definition` (debounced; a newer one cancels the older), asking for a breakdown by the
/// chosen fields in the same request: {result, error, busy}.
function usePreview(definition, by) {
  const [state, setState] = useState({ result: null, error: null, busy: false });
  const seq = useRef(0);
  const fields = by.filter(Boolean).map(breakdownField);
  const text = definition ? JSON.stringify([definition, fields]) : '';
  useEffect(() => {
    if (!definition) { setState({ result: null, error: null, busy: false }); return; }
    const mine = ++seq.current;
    setState((s) => ({ ...s, busy: true }));
    // A preview evaluates every profile: the one for a definition that changed meanwhile is cancelled.
    const abort = new AbortController();
    const body = fields.length ? { ...definition, breakdown: fields } : definition;
    const id = setTimeout(() => {
      post('/v1/segments/preview', body, { signal: abort.signal }).then(
        (result) => mine === seq.current && setState({ result, error: null, busy: false }),
        (error) => mine === seq.current && error.name !== 'AbortError' && setState({ result: null, error, busy: false }),
      );
    }, 350);
    return () => { clearTimeout(id); abort.abort(); };
  }, [text]);
  return state;
}

/// The sample's profiles with a name and an identifier a marketer recognises.
function Sample({ ids }) {
  const [people, setPeople] = useState({});
  const key = ids.join(',');
  useEffect(() => {
    let stale = false;
    Promise.all(ids.map((id) => get(`/v1/profiles/${enc(id)}`).catch(() => null))).then((ps) => {
      if (stale) return;
      const out = {};
      ps.forEach((p, i) => { if (p) out[ids[i]] = p; });
      setPeople(out);
    });
    return () => { stale = true; };
  }, [key]);
  if (!ids.length) return html`<${Empty} />`;
  return html`<ul class="sample" data-testid="sample">${ids.map((id) => {
    const p = people[id];
    const name = p?.traits?.name?.value;
    const contact = p && (p.identifiers.find((i) => i.type === 'phone') || p.identifiers.find((i) => i.type === 'email'));
    return html`<li><a href=${'#/customer/' + enc(id)}>${name || id}</a> <small class="muted">${contact ? contact.value : ''}${name ? ' · ' + id : ''}</small></li>`;
  })}</ul>`;
}

function Preview({ definition, preview }) {
  const r = preview.result;
  if (!definition) return html`<p class="muted">${t('builder.startHint')}</p>`;
  return html`<div class=${'preview' + (preview.busy ? ' busy' : '')} data-testid="preview" data-busy=${preview.busy ? 'true' : 'false'}>
    <${ErrorBox} error=${preview.error} />
    ${r && html`
      <div class="stats">
        <div class="stat big"><span>${t('builder.count')}</span><b data-testid="preview-count" data-count=${r.count}>${fmtNumber(r.count)}</b>
          ${r.profiles ? html`<small>${t('builder.ofProfiles', { n: fmtNumber(r.profiles), pct: fmtNumber((100 * r.count) / r.profiles, 1) })}</small>` : ''}</div>
        <div class="stat"><span>${t('builder.spend')}</span><b data-testid="preview-spend">${fmtMoney(r.totals?.spend)}</b><small>${r.count ? t('builder.perMember', { v: fmtMoney((r.totals?.spend || 0) / r.count) }) : ''}</small></div>
        <div class="stat"><span>${t('builder.orders')}</span><b>${fmtNumber(r.totals?.orders)}</b></div>
        <div class="stat"><span>${t('builder.took')}</span><b>${fmtNumber(r.took_ms)} ms</b></div>
      </div>
      ${r.evaluated_by === 'events' && html`<p class="muted small">${t('builder.byEvents')}</p>`}
      <h3>${t('builder.sample')}</h3>
      <${Sample} ids=${(r.sample || []).map((s) => (typeof s === 'string' ? s : s.profile_id))} />
      ${r.overlap?.length > 0 && html`<h3>${t('builder.overlap')}</h3>
        <${Bars} testid="overlap" items=${r.overlap.filter((o) => o.count > 0).slice(0, 6).map((o) => ({ label: o.segment, value: o.count, note: r.count ? `${fmtNumber((100 * o.count) / r.count, 1)}%` : '' }))} />`}`}
  </div>`;
}

/// The breakdown card: up to two fields to break the preview's members down by, and what it answered.
function BreakdownCard({ schema, by, setBy, preview, definition }) {
  const options = breakdownOptions(schema);
  const r = preview.result;
  return html`<${Card} title=${t('builder.breakdown')} id="breakdown-card">
    <div class="inline">
      <${Select} label=${t('builder.breakdownBy')} testid="breakdown-1" value=${by[0]} options=${[['', t('builder.noBreakdownChoice')], ...options]}
        onChange=${(v) => setBy([v, v ? by[1] : ''])} />
      ${by[0] && html`<span class="muted">${t('builder.thenBy')}</span>
        <${Select} label=${t('builder.thenBy')} testid="breakdown-2" value=${by[1]} options=${[['', t('builder.oneField')], ...options.filter((o) => o[0] !== by[0])]} onChange=${(v) => setBy([by[0], v])} />`}
    </div>
    ${!definition ? html`<p class="muted">${t('builder.startHint')}</p>`
      : !by[0] ? html`<p class="muted small">${t('builder.chooseBreakdown')}</p>`
      : r?.breakdown ? html`<div class=${preview.busy ? 'busy' : ''}><${Breakdown} breakdown=${r.breakdown} schema=${schema} /></div>`
      : preview.error ? '' : html`<${Loading} />`}
    <p class="muted small">${t('builder.breakdownNote')}</p>
  </${Card}>`;
}

function Save({ definition, name, setName, onSaved, initialId }) {
  const [id, setId] = useState(initialId || '');
  const [msg, setMsg] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => setId(initialId || ''), [initialId]);
  const save = async (e) => {
    e.preventDefault();
    setError(null); setMsg(null);
    try {
      const body = { name: name || id, condition: definition.condition };
      let answer = await put(`/v1/segments/${enc(id)}`, body);
      // A new definition is filled by a job in the background: follow it until it is ready.
      for (let i = 0; answer.status !== 'ready' && i < 120; i++) {
        setMsg(t('builder.savedPending'));
        await new Promise((r) => setTimeout(r, 500));
        try { answer = await get(`/v1/segments/${enc(id)}`); } catch (err) { if (err.status !== 404) throw err; }
      }
      setMsg(answer.status === 'ready' ? t('builder.saved', { id, n: fmtNumber(answer.members ?? 0) }) : t('builder.savedPending'));
      onSaved(id);
    } catch (err) { setError(err); }
  };
  return html`<form class="save" onSubmit=${save}>
    <label>${t('builder.segmentId')}<input value=${id} required pattern="[a-z0-9_]+" title=${t('builder.idHint')} onInput=${(e) => setId(e.target.value)} /></label>
    <label>${t('builder.segmentName')}<input value=${name} onInput=${(e) => setName(e.target.value)} /></label>
    <button type="submit" disabled=${!definition || !id}>${t('builder.save')}</button>
    ${msg && html`<span class="ok" role="status">${msg}</span>`}
    <${ErrorBox} error=${error} />
  </form>`;
}

/// A saved segment's members, a page at a time (`GET /v1/segments/{id}/members`, keyset on the profile id).
function Members({ id }) {
  const paged = usePaged(async (after) => {
    const page = await get(`/v1/segments/${enc(id)}/members`, { limit: 20, after, fields: 'profile_id,since,traits.name,identifiers.phone,identifiers.email' });
    return { items: page.items, next: page.next_after };
  }, [id]);
  return html`<${Card} title=${t('builder.membersOf', { id })} id="members" actions=${html`<${Pager} paged=${paged} />`}>
    ${paged.items === null ? html`<${Loading} />` : html`<${Table} testid="members" rows=${paged.items} columns=${[
      { label: t('customer.trait'), render: (m) => html`<a href=${'#/customer/' + enc(m.profile_id)}>${m['traits.name'] || m.profile_id}</a>` },
      { label: t('builder.contact'), render: (m) => m.phone || m.email || '—' },
      { label: 'profile_id', render: (m) => html`<code>${m.profile_id}</code>` },
      { label: t('customer.since'), render: (m) => fmtTime(m.since) },
    ]} />`}
    <${ErrorBox} error=${paged.error} />
  </${Card}>`;
}

function Export({ segments, schema }) {
  const [segment, setSegment] = useState('');
  const [fields, setFields] = useState(['profile_id', 'since']);
  const [channel, setChannel] = useState('');
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { if (!segment && segments.length) setSegment(segments[0].id); }, [segments]);
  const base = ['profile_id', 'since', 'caused_by'];
  const extra = [...['email', 'phone'].map((i) => 'id:' + i), ...schema.traits.map((f) => 'trait:' + f.name).slice(0, 12), ...schema.computed_traits.map((f) => 'computed:' + f.name).slice(0, 8)];
  const toggle = (f) => setFields(fields.includes(f) ? fields.filter((x) => x !== f) : [...fields, f]);
  // The server writes the CSV (`fields`, `channel`: members reachable there with the address), streamed.
  const run = async () => {
    setError(null);
    const serverField = (c) => c.replace(/^id:/, 'identifiers.').replace(/^trait:/, 'traits.').replace(/^computed:/, 'computed_traits.');
    const cols = [...base, ...extra].filter((f) => fields.includes(f)).map(serverField);
    try {
      setProgress(t('export.progress', { n: fmtNumber(0) }));
      const response = await call('GET', `/v1/segments/${enc(segment)}/members`, { raw: true, params: { format: 'csv', fields: cols.join(','), channel } });
      // Streamed: the rows are counted as they arrive (a million members is a long download).
      const reader = response.body.getReader();
      const chunks = [];
      let lines = 0;
      let shown = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        for (const byte of value) if (byte === 10) lines++;
        if (lines - shown >= 1000) { shown = lines; setProgress(t('export.progress', { n: fmtNumber(Math.max(0, lines - 1)) })); }
      }
      const last = chunks.length ? chunks[chunks.length - 1] : null;
      if (last && last.length && last[last.length - 1] !== 10) lines++;
      const n = Math.max(0, lines - 1);
      const blob = new Blob(chunks, { type: 'text/csv' });
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `${segment}.csv`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      setProgress(t('export.done', { n: fmtNumber(n) }));
    } catch (err) { setError(err); setProgress(null); }
  };
  return html`<div class="export" data-testid="export">
    <div class="inline">
      <${Select} label=${t('export.segment')} testid="export-segment" value=${segment} options=${segments.map((s) => [s.id, `${s.id} (${fmtNumber(s.members)})`])} onChange=${setSegment} />
      <${Select} label=${t('export.channel')} value=${channel} options=${[['', t('export.anyChannel')], ...schema.consent.channels.map((c) => [c, t('export.reachableOn', { c: t('channel.' + c) })])]} onChange=${setChannel} />
      <button onClick=${run} disabled=${!segment}>${t('export.csv')}</button>
      ${progress && html`<span class="muted" role="status" data-testid="export-status">${progress}</span>`}
    </div>
    <fieldset class="fields"><legend>${t('export.fields')}</legend>
      ${[...base, ...extra].map((f) => html`<label class="check"><input type="checkbox" checked=${fields.includes(f)} onChange=${() => toggle(f)} /> ${f}</label>`)}
    </fieldset>
    <p class="muted small">${t('export.note')}</p>
    <${ErrorBox} error=${error} />
  </div>`;
}

export function SegmentsPage({ can }) {
  const schema = useLoad(() => get('/v1/schema'), []);
  const list = useLoad(() => get('/v1/segments'), []);
  const [root, setRoot] = useState(() => ({ ...blank('group'), op: 'all', items: [] }));
  const [name, setName] = useState('');
  const [editing, setEditing] = useState('');
  const [raw, setRaw] = useState(null);
  const [by, setBy] = useState(null);
  const [listing, setListing] = useState('');
  const definition = useMemo(() => {
    if (!schema.data) return null;
    const condition = toJson({ ...root, not: false }, schema.data);
    return condition ? { name: name || 'preview', condition } : null;
  }, [root, name, schema.data]);
  const fields = by || (schema.data ? [defaultBreakdown(schema.data), ''] : ['', '']);
  const preview = usePreview(definition, fields);
  if (schema.error) return html`<div class="page"><${ErrorBox} error=${schema.error} /></div>`;
  if (!schema.data) return html`<div class="page"><${Loading} /></div>`;
  const segments = list.data?.items || [];
  const edit = (s) => {
    const c = fromJson(s.definition?.condition);
    setEditing(s.id); setName(s.definition?.name || s.name || '');
    if (c) { setRoot(c.kind === 'group' && !c.not ? c : { ...blank('group'), op: 'all', items: [c] }); setRaw(null); } else setRaw(s.definition);
    window.scrollTo(0, 0);
  };
  return html`<div class="page">
    <header class="page-head"><h1>${t('builder.title')}</h1></header>
    <div class="builder-layout">
      <${Card} title=${t('builder.conditions')} id="builder">
        <${Group} g=${root} schema=${schema.data} depth=${0} onChange=${setRoot} />
        ${raw && html`<p class="muted">${t('builder.cannotShow')}</p><pre>${JSON.stringify(raw, null, 1)}</pre>`}
        <details class="json"><summary>${t('builder.json')}</summary><pre data-testid="definition">${definition ? JSON.stringify(definition, null, 1) : ''}</pre></details>
        ${can.admin ? html`<${Save} definition=${definition} name=${name} setName=${setName} initialId=${editing} onSaved=${() => list.reload()} />` : html`<p class="muted small">${t('builder.adminOnly')}</p>`}
      </${Card}>
      <${Card} title=${t('builder.preview')} id="preview-card"><${Preview} definition=${definition} preview=${preview} /></${Card}>
    </div>
    <${BreakdownCard} schema=${schema.data} by=${fields} setBy=${setBy} preview=${preview} definition=${definition} />
    <${Card} title=${t('builder.list')} id="segment-list" actions=${html`<button class="ghost small" onClick=${list.reload}>${t('common.refresh')}</button>`}>
      <${Table} testid="segment-list" rows=${segments} columns=${[
        { label: t('builder.segmentId'), render: (s) => html`<code>${s.id}</code>` },
        { label: t('builder.segmentName'), render: (s) => s.definition?.name || '—' },
        { label: t('builder.members'), render: (s) => fmtNumber(s.members), num: true },
        { label: t('builder.status'), render: (s) => html`<${Chip} kind=${s.status === 'ready' ? 'ok' : 'warn'}>${t('status.' + s.status)}</${Chip}>` },
        { label: t('builder.definedAt'), render: (s) => fmtTime(s.defined_at) },
        { label: '', render: (s) => html`<button class="ghost small" onClick=${() => setListing(s.id)}>${t('builder.listMembers')}</button>
          <button class="ghost small" onClick=${() => edit(s)}>${t('builder.open')}</button>` },
      ]} />
    </${Card}>
    ${listing && html`<${Members} key=${listing} id=${listing} />`}
    <${Card} title=${t('export.title')} id="export"><${Export} segments=${segments} schema=${schema.data} /></${Card}>
  </div>`;
}
