// Shared pieces of the console: the html template tag, formatting, cards, tables, pagers and charts
// (plain SVG: no chart library).

import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { t, lang } from './i18n.js';

export const html = htm.bind(h);

export function fmtNumber(n, digits) {
  if (n === null || n === undefined || n === '') return '—';
  if (typeof n !== 'number') return String(n);
  return n.toLocaleString(lang(), digits === undefined ? { maximumFractionDigits: 2 } : { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function fmtMoney(n) {
  if (n === null || n === undefined) return '—';
  return `¥${fmtNumber(Number(n), 2)}`;
}

export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  return d.toLocaleString(lang(), { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
}

export function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return fmtNumber(v);
  if (typeof v === 'boolean') return v ? t('common.yes') : t('common.no');
  if (Array.isArray(v)) return v.map(fmtValue).join(', ');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function Card({ title, actions, children, id, wide }) {
  return html`<section class=${'card' + (wide ? ' wide' : '')} id=${id}>
    ${title && html`<header class="card-head"><h2>${title}</h2>${actions && html`<div class="actions">${actions}</div>`}</header>`}
    <div class="card-body">${children}</div>
  </section>`;
}

export function Empty({ children }) {
  return html`<p class="empty">${children || t('common.none')}</p>`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  const msg = error.status === 403 ? t('error.forbidden') : error.status === 0 ? t('error.network') : error.message;
  return html`<div class="error" role="alert">${msg}${error.field ? html` <code>${error.field}</code>` : ''}</div>`;
}

export function Loading() {
  return html`<p class="loading">${t('common.loading')}</p>`;
}

export function Chip({ children, kind, title }) {
  return html`<span class=${'chip' + (kind ? ' ' + kind : '')} title=${title}>${children}</span>`;
}

/// A table from rows and columns [{label, render(row)}].
export function Table({ columns, rows, empty, testid }) {
  if (!rows || !rows.length) return html`<${Empty}>${empty}</${Empty}>`;
  return html`<div class="table-wrap"><table data-testid=${testid}>
    <thead><tr>${columns.map((c) => html`<th class=${c.num ? 'num' : ''}>${c.label}</th>`)}</tr></thead>
    <tbody>${rows.map((r, i) => html`<tr key=${i}>${columns.map((c) => html`<td class=${c.num ? 'num' : ''}>${c.render(r)}</td>`)}</tr>`)}</tbody>
  </table></div>`;
}

/// Cursor paging: `load(cursor)` answers {items, next}; shows a page at a time with previous / next.
export function usePaged(load, deps) {
  const [state, setState] = useState({ items: null, error: null, next: null, stack: [], loading: true });
  const cursorRef = useRef(null);
  const go = async (cursor, stack) => {
    cursorRef.current = cursor;
    setState((s) => ({ ...s, loading: true }));
    try {
      const page = await load(cursor);
      if (cursorRef.current !== cursor) return;
      setState({ items: page.items, next: page.next, stack, error: null, loading: false });
    } catch (error) {
      setState((s) => ({ ...s, error, loading: false, items: s.items || [] }));
    }
  };
  useEffect(() => { go(null, []); }, deps);
  return {
    ...state,
    nextPage: () => state.next !== null && state.next !== undefined && go(state.next, [...state.stack, cursorRef.current]),
    prevPage: () => {
      if (!state.stack.length) return;
      const stack = state.stack.slice(0, -1);
      go(state.stack[state.stack.length - 1], stack);
    },
    reload: () => go(cursorRef.current, state.stack),
  };
}

/// Pages through a list already loaded whole (one customer's membership history), `size` rows at a
/// time, in the shape `Pager` reads.
export function useListPages(rows, size) {
  const [page, setPage] = useState(0);
  const all = rows || [];
  const last = Math.max(0, Math.ceil(all.length / size) - 1);
  const at = Math.min(page, last);
  useEffect(() => { if (page > last) setPage(last); }, [last]);
  return {
    items: rows ? all.slice(at * size, (at + 1) * size) : null,
    next: at < last ? at + 1 : null,
    stack: Array.from({ length: at }),
    loading: false,
    nextPage: () => setPage(Math.min(at + 1, last)),
    prevPage: () => setPage(Math.max(at - 1, 0)),
  };
}

export function Pager({ paged }) {
  const page = paged.stack.length + 1;
  return html`<div class="pager">
    <button class="ghost" disabled=${!paged.stack.length || paged.loading} onClick=${paged.prevPage}>‹ ${t('common.prev')}</button>
    <span>${t('common.page', { n: page })}</span>
    <button class="ghost" disabled=${paged.next === null || paged.next === undefined || paged.loading} onClick=${paged.nextPage}>${t('common.next')} ›</button>
  </div>`;
}

/// The RFM groups in the order of their value to the business (the catalog's charts and the builder's
/// breakdown show them so, not by size).
export const RFM_ORDER = ['champions', 'loyal', 'potential', 'new', 'at_risk', 'hibernating', 'lost'];

/// Sorts `items` by where `valueOf(item)` is in `order` (those not in it after, by `fallback`).
export function inOrder(items, order, valueOf, fallback) {
  const at = (v) => { const i = order.indexOf(v); return i < 0 ? order.length : i; };
  return [...items].sort((a, b) => at(valueOf(a)) - at(valueOf(b)) || fallback(a, b));
}

const PALETTE = ['#1f5eff', '#00a37a', '#f29d0c', '#d6455d', '#7a5af8', '#0ea5b7', '#8a8f98', '#b45309'];
export const colour = (i) => PALETTE[i % PALETTE.length];

/// Horizontal bars: items [{label, value, note}].
export function Bars({ items, format, testid }) {
  if (!items || !items.length) return html`<${Empty} />`;
  const max = Math.max(1, ...items.map((i) => Number(i.value) || 0));
  return html`<div class="bars" data-testid=${testid}>${items.map((it, i) => html`
    <div class="bar-row" key=${i}>
      <span class="bar-label" title=${it.label}>${it.label}</span>
      <svg class="bar-svg" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
        <rect x="0" y="1" width=${Math.max(0.5, (100 * (Number(it.value) || 0)) / max)} height="8" rx="1" fill=${it.colour || colour(i)} />
      </svg>
      <span class="bar-value">${format ? format(it.value) : fmtNumber(it.value)}${it.note ? html` <small>${it.note}</small>` : ''}</span>
    </div>`)}
  </div>`;
}

/// A line chart of several series over the same x labels: series [{name, values}].
export function Lines({ labels, series, testid }) {
  if (!series || !series.length) return html`<${Empty} />`;
  const W = 640, H = 200, L = 44, B = 24, T = 8, R = 22;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const n = Math.max(1, labels.length - 1);
  const x = (i) => L + ((W - L - R) * i) / n;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const ticks = [0, 0.5, 1].map((f) => Math.round(max * f));
  return html`<div class="lines" data-testid=${testid}>
    <svg viewBox=${`0 0 ${W} ${H}`} class="line-svg" role="img">
      ${ticks.map((v) => html`<g><line x1=${L} x2=${W - R} y1=${y(v)} y2=${y(v)} class="grid" /><text x=${L - 6} y=${y(v) + 4} text-anchor="end" class="axis">${fmtNumber(v)}</text></g>`)}
      ${labels.map((l, i) => (i % Math.ceil(labels.length / 6) === 0 || i === labels.length - 1) && html`<text x=${x(i)} y=${H - 6} text-anchor="middle" class="axis">${l.slice(5)}</text>`)}
      ${series.map((s, si) => html`<polyline fill="none" stroke=${colour(si)} stroke-width="2" points=${s.values.map((v, i) => `${x(i)},${y(v)}`).join(' ')} />`)}
    </svg>
    <div class="legend">${series.map((s, si) => html`<span><i class=${'sw sw' + (si % 8)}></i>${s.name} <b>${fmtNumber(s.values[s.values.length - 1])}</b></span>`)}</div>
  </div>`;
}

/// Calls `fn` `ms` after the last change of `deps`.
export function useDebounced(fn, deps, ms) {
  useEffect(() => {
    const id = setTimeout(fn, ms);
    return () => clearTimeout(id);
  }, deps);
}

/// Loads once per `deps`: {data, error, loading, reload}.
export function useLoad(load, deps) {
  const [s, set] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const run = () => {
    const mine = ++seq.current;
    set((p) => ({ ...p, loading: true }));
    load().then(
      (data) => mine === seq.current && set({ data, error: null, loading: false }),
      (error) => mine === seq.current && set({ data: null, error, loading: false }),
    );
  };
  useEffect(run, deps);
  return { ...s, reload: run };
}
