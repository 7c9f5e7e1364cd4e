// The console in a real browser: Debian's chromium driven by playwright-core. Signs in (and is refused
// with a wrong token), finds the demo's featured customer by phone and checks their tags and segments,
// builds a two-condition segment and checks the live count against POST /v1/segments/preview, breaks it
// down by two fields and checks every group (members, spend) against the preview's breakdown, saves it,
// exports its members as CSV, visits every page (taking a screenshot of each), and checks that a read
// token sees no editing controls and that a zh-CN browser gets the Chinese console.
//
// Environment: CDP_URL, CDP_TOKEN (admin), CDP_READ_TOKEN, CDP_USER_ID (the featured customer),
// CHROMIUM (default /usr/bin/chromium), SCREENSHOTS (the screenshots' directory; run.sh makes a
// temporary one unless CONSOLE_SCREENSHOTS names one, such as docs/console for the README's).

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import assert from 'node:assert/strict';

const base = process.env.CDP_URL;
const admin = process.env.CDP_TOKEN;
const reader = process.env.CDP_READ_TOKEN;
const userId = process.env.CDP_USER_ID;
const shots = process.env.SCREENSHOTS;
assert.ok(base && admin && reader && userId && shots, 'CDP_URL, CDP_TOKEN, CDP_READ_TOKEN, CDP_USER_ID and SCREENSHOTS are required');
mkdirSync(shots, { recursive: true });

const started = Date.now();
const step = (s) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${s}`);

async function api(method, path, body, token = admin) {
  const r = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let data = text;
  try { data = JSON.parse(text); } catch { /* CSV */ }
  return { status: r.status, data };
}

async function until(what, fn, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
const problems = [];
function watch(page, name) {
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused call logs a failed resource load; those are the test's own (wrong token, no /v1/quality).
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`${name}: console: ${m.text()}`);
  });
}
const shot = async (page, file) => {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(150);
  await page.screenshot({ path: `${shots}/${file}`, fullPage: true });
  step(`screenshot ${shots}/${file}`);
};

try {
  // The customer the test looks for, as the API knows them.
  const featured = await api('GET', `/v1/profiles/lookup?type=user_id&value=${encodeURIComponent(userId)}`);
  assert.equal(featured.status, 200, `the featured customer ${userId} is not found: ${JSON.stringify(featured.data)}`);
  const profileId = featured.data.profile_id;
  const phone = featured.data.identifiers.find((i) => i.type === 'phone')?.value;
  assert.ok(phone, 'the featured customer has a phone');
  const tagNames = Object.keys(featured.data.tags);
  const memberships = await api('GET', `/v1/profiles/${profileId}/memberships`);
  const segmentIds = memberships.data.segments.map((s) => s.segment);
  step(`featured customer ${userId}: ${profileId}, phone ${phone}, tags ${tagNames.join(' ')}, segments ${segmentIds.join(' ') || '(none)'}`);

  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1440, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  watch(page, 'en');

  // The page and its headers.
  const response = await page.goto(base + '/');
  assert.match(response.headers()['content-type'], /^text\/html/);
  assert.match(response.headers()['content-security-policy'], /default-src 'none'; script-src 'self' 'sha256-/);
  await page.getByLabel('API token').waitFor();
  await shot(page, '01-sign-in.png');

  step('a wrong token is refused with a clear message');
  await page.getByLabel('API token').fill('tok_not_a_real_token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'This token was not accepted' }).waitFor();
  await shot(page, '02-wrong-token.png');

  step('sign in');
  await page.getByLabel('API token').fill(admin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('workspace').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cdp.token')), admin);
  assert.equal(await page.evaluate(() => localStorage.getItem('cdp.token')), null);

  step('find the featured customer by phone');
  await page.getByLabel('Find customer').fill(phone);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByTestId('profile').waitFor();
  const tagsText = await page.getByTestId('tags').innerText();
  for (const tag of tagNames) assert.ok(tagsText.includes(tag), `the 360 view shows tag ${tag}: ${tagsText}`);
  await until('the segments', async () => !(await page.locator('#segments').innerText()).includes('Loading'));
  const segmentsText = await page.getByTestId('segments').innerText();
  for (const s of segmentIds) assert.ok(segmentsText.includes(s), `the 360 view shows segment ${s}: ${segmentsText}`);
  assert.ok((await page.getByTestId('identifiers').innerText()).includes(phone));
  await page.getByTestId('timeline').waitFor();
  await page.locator('#why .timeline-list').first().waitFor();
  // Membership history at a time (?at=): now, as the browser's local time.
  const now = await page.evaluate(() => { const d = new Date(Date.now() + 60000); const p = (n) => String(n).padStart(2, '0'); return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`; });
  await page.getByLabel('Segments at').fill(now);
  const asOf = await page.getByTestId('as-of').innerText();
  for (const s of segmentIds) assert.ok(asOf.includes(s), `the segments at ${now} include ${s}: ${asOf}`);
  await shot(page, '03-customer-360.png');

  step('build a two-condition segment');
  const schema = (await api('GET', '/v1/schema')).data;
  // The tag value most profiles have (not an RFM group: those are left to break the segment down by),
  // and a numeric computed trait.
  const top = (t) => Math.max(0, ...t.candidates.map((c) => c.profiles || 0));
  const tag = schema.tags.filter((t) => t.kind !== 'rfm' && t.candidates.length).sort((a, b) => top(b) - top(a))[0] || schema.tags[0];
  const tagValue = [...tag.candidates].sort((a, b) => b.profiles - a.profiles)[0].value;
  const number = schema.computed_traits.find((t) => t.type === 'number');
  assert.ok(tag && number, 'the schema offers a tag and a numeric computed trait');
  await page.goto(base + '/#/segments');
  const add = page.getByRole('button', { name: 'Add condition' });
  await add.click();
  await add.click();
  const rows = page.getByTestId('condition');
  await rows.nth(0).getByLabel('Condition type').selectOption('tag');
  await rows.nth(0).getByLabel('Field').selectOption(tag.name);
  await rows.nth(0).getByLabel('Operator').selectOption('eq');
  await rows.nth(0).getByLabel('Value', { exact: true }).fill(String(tagValue));
  await rows.nth(1).getByLabel('Condition type').selectOption('computed');
  await rows.nth(1).getByLabel('Field').selectOption(number.name);
  await rows.nth(1).getByLabel('Operator').selectOption('gt');
  await rows.nth(1).getByLabel('Value', { exact: true }).fill('0');
  const condition = { all: [{ tag: tag.name, op: 'eq', value: tagValue }, { computed: number.name, op: 'gt', value: 0 }] };
  const expected = (await api('POST', '/v1/segments/preview', { name: 'check', condition })).data;
  const shown = await until('the preview count', async () => {
    if ((await page.getByTestId('preview').getAttribute('data-busy')) !== 'false') return null;
    const c = page.getByTestId('preview-count');
    return (await c.count()) ? Number(await c.getAttribute('data-count')) : null;
  });
  const definition = JSON.parse(await page.getByTestId('definition').textContent());
  assert.deepEqual(definition.condition, condition, 'the builder makes the definition the test expects');
  assert.equal(shown, expected.count, `the console shows ${shown}, POST /v1/segments/preview answers ${expected.count}`);
  step(`preview: ${shown} members (tag ${tag.name} = ${tagValue} and ${number.name} > 0), as POST /v1/segments/preview answers`);
  step('break it down by two fields');
  // The city (a trait of words) against the RFM groups (or another tag): one preview request carries it.
  const words = schema.traits.find((f) => f.name === 'city') || schema.traits.find((f) => f.type === 'string' && f.candidates.length > 1);
  const groupTag = schema.tags.find((f) => f.kind === 'rfm' && f.name !== tag.name) || schema.tags.find((f) => f.name !== tag.name) || tag;
  assert.ok(words, 'the schema offers a trait of words to break down by');
  const by = [{ trait: words.name }, { tag: groupTag.name }];
  await page.getByLabel('Break down by', { exact: true }).selectOption('trait:' + words.name);
  await page.getByLabel('then by', { exact: true }).selectOption('tag:' + groupTag.name);
  const readGroups = (els) => els.map((e) => ({ values: JSON.parse(e.dataset.values), count: Number(e.dataset.count), spend: Number(e.dataset.spend) }));
  const shownGroups = await until('the breakdown by two fields', async () => {
    if ((await page.getByTestId('preview').getAttribute('data-busy')) !== 'false') return null;
    const b = page.getByTestId('breakdown');
    if (!(await b.count()) || (await b.getAttribute('data-fields')) !== JSON.stringify(by)) return null;
    return b.locator('[data-group]').evaluateAll(readGroups);
  });
  const answered = (await api('POST', '/v1/segments/preview', { name: 'check', condition, breakdown: by })).data;
  assert.equal(answered.count, expected.count);
  assert.deepEqual(answered.breakdown.fields, by);
  const inOrder = (groups) => groups.map((g) => ({ values: g.values, count: g.count, spend: g.spend }))
    .sort((a, b) => JSON.stringify(a.values).localeCompare(JSON.stringify(b.values)));
  assert.ok(answered.breakdown.groups.length > 1, `a breakdown of ${expected.count} members by ${JSON.stringify(by)} has several groups`);
  assert.equal(answered.breakdown.total_groups, answered.breakdown.groups.length, 'every group is answered (and so shown)');
  assert.deepEqual(inOrder(shownGroups), inOrder(answered.breakdown.groups), 'the builder shows the breakdown POST /v1/segments/preview answers');
  const members = shownGroups.reduce((n, g) => n + g.count, 0);
  step(`breakdown: ${shownGroups.length} groups of ${words.name} × ${groupTag.name}, ${members} members, as POST /v1/segments/preview answers`);
  await page.getByTestId('sample').locator('li').first().waitFor();
  await shot(page, '04-segment-builder.png');

  step('save it');
  const id = 'console_ci_' + Date.now().toString(36);
  await page.getByLabel('Segment id').fill(id);
  await page.getByLabel('Name', { exact: true }).fill('Console CI: two conditions');
  await page.getByRole('button', { name: 'Save segment' }).click();
  await page.getByRole('status').filter({ hasText: /^Saved .*members/ }).waitFor({ timeout: 60000 });
  const saved = await until('the saved segment to be ready', async () => {
    const s = await api('GET', `/v1/segments/${id}`);
    return s.status === 200 && s.data.status === 'ready' ? s.data : null;
  }, 60);
  assert.deepEqual(saved.definition.condition, condition);
  assert.equal(saved.members, expected.count, 'the saved segment has as many members as the preview said');

  step('export its members as CSV');
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.getByTestId('segment-list').getByText(id).waitFor();
  await page.getByLabel('Segment to export').selectOption(id);
  await page.getByLabel('caused_by').check();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
  const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
  assert.equal(csv[0], 'profile_id,since,caused_by');
  assert.equal(csv.length - 1, saved.members, `the CSV has ${csv.length - 1} rows for ${saved.members} members`);
  const apiCsv = (await api('GET', `/v1/segments/${id}/members?format=csv&limit=100000`)).data.trim().split('\n');
  assert.deepEqual(csv.slice(1).map((l) => l.split(',')[0]).sort(), apiCsv.slice(1).map((l) => l.split(',')[0]).sort());
  await page.getByTestId('export-status').filter({ hasText: 'exported' }).waitFor();
  step(`exported ${csv.length - 1} members (${download.suggestedFilename()})`);

  step('page through its members');
  await page.getByTestId('segment-list').locator('tr', { hasText: id }).getByRole('button', { name: 'Members', exact: true }).click();
  const memberIds = async () => page.getByTestId('members').locator('tbody tr td:nth-child(3)').allInnerTexts();
  const first = (await api('GET', `/v1/segments/${id}/members?limit=20`)).data;
  assert.equal(first.items.length, Math.min(20, saved.members));
  await until('the first page of members', async () => JSON.stringify(await memberIds()) === JSON.stringify(first.items.map((m) => m.profile_id)));
  if (first.next_after) {
    const second = (await api('GET', `/v1/segments/${id}/members?limit=20&after=${encodeURIComponent(first.next_after)}`)).data;
    await page.locator('#members').getByRole('button', { name: /Next/ }).click();
    await until('the second page of members', async () => JSON.stringify(await memberIds()) === JSON.stringify(second.items.map((m) => m.profile_id)));
    await page.locator('#members').getByRole('button', { name: /Previous/ }).click();
    await until('the first page again', async () => JSON.stringify(await memberIds()) === JSON.stringify(first.items.map((m) => m.profile_id)));
  }
  await shot(page, '05-segments-saved-and-export.png');

  step('saved definitions open in the builder as they were saved');
  for (const s of (await api('GET', '/v1/segments')).data.items) {
    await page.getByTestId('segment-list').locator('tr', { hasText: s.id }).getByRole('button', { name: 'Open in builder' }).click();
    const shownDef = JSON.parse(await page.getByTestId('definition').textContent());
    assert.deepEqual(shownDef.condition, s.definition.condition, `segment ${s.id} round-trips through the builder`);
  }

  step('tags and traits');
  await page.goto(base + '/#/catalog');
  await page.locator('.bars').first().waitFor();
  await page.getByTestId('sizes').waitFor();
  await page.getByTestId('traits').waitFor();
  await shot(page, '06-tags-and-traits.png');

  step('data quality');
  await page.goto(base + '/#/quality');
  await page.getByTestId('quarantine').waitFor();
  await page.getByTestId('reasons').waitFor();
  // The chart counts every refusal, as the API's first page does.
  const quarantined = await api('GET', '/v1/quarantine?limit=1');
  assert.equal(quarantined.status, 200, JSON.stringify(quarantined.data));
  assert.equal(quarantined.data.by_reason.reduce((n, r) => n + r.count, 0), quarantined.data.total);
  if (quarantined.data.total < 1000) {
    await page.locator('#reasons').filter({ hasText: `${quarantined.data.total} refused messages in all` }).waitFor();
  }
  await shot(page, '07-data-quality.png');

  step('live changes');
  await page.goto(base + '/#/live');
  await page.getByTestId('live-status').filter({ hasText: 'live' }).waitFor();
  await page.waitForTimeout(500);
  const flag = 'console_ci_flag';
  const def = await api('PUT', `/v1/tags/${flag}`, { type: 'manual' });
  assert.ok([200, 202].includes(def.status), JSON.stringify(def.data));
  await until('the manual tag definition', async () => (await api('GET', `/v1/tags/${flag}`)).status === 200);
  const tagged = await api('POST', `/v1/profiles/${profileId}/tags/${flag}`, { value: 'checked' });
  assert.ok([200, 202].includes(tagged.status), JSON.stringify(tagged.data));
  await page.getByTestId('live').getByText(flag).first().waitFor({ timeout: 30000 });
  await shot(page, '08-live.png');
  await context.close();

  step('a zh-CN browser gets the Chinese console');
  const zh = await browser.newContext({ locale: 'zh-CN', viewport: { width: 1440, height: 900 } });
  const zpage = await zh.newPage();
  watch(zpage, 'zh-CN');
  await zpage.goto(base + '/');
  const keys = await zpage.evaluate(async () => {
    const m = await import(document.querySelector('script[type=module]').src.replace('app.js', 'i18n.js'));
    return m.KEYS;
  });
  assert.deepEqual([...keys.zh].sort(), [...keys.en].sort(), 'every English text has a Chinese one');
  await zpage.getByLabel('API 令牌').fill(admin);
  await zpage.getByRole('button', { name: '登录' }).click();
  await zpage.getByLabel('查找客户').fill(phone);
  await zpage.getByRole('button', { name: '搜索' }).click();
  await zpage.getByTestId('profile').waitFor();
  await zpage.getByTestId('timeline').waitFor();
  await shot(zpage, '09-customer-360-zh-CN.png');
  await zpage.goto(base + '/#/segments');
  await zpage.getByRole('button', { name: '添加条件' }).click();
  await zpage.getByTestId('condition').first().getByLabel('条件类型').selectOption('tag');
  await zpage.getByTestId('condition').first().getByLabel('字段').selectOption(tag.name);
  await zpage.getByTestId('condition').first().getByLabel('值').fill(String(tagValue));
  await zpage.getByTestId('preview-count').waitFor();
  await shot(zpage, '10-segment-builder-zh-CN.png');
  await zpage.getByRole('button', { name: 'English' }).click();
  await zpage.getByRole('button', { name: 'Add condition' }).waitFor();
  await zh.close();

  step('a read token sees no editing controls');
  const ro = await browser.newContext({ locale: 'en-US', viewport: { width: 1440, height: 900 } });
  const rpage = await ro.newPage();
  watch(rpage, 'read');
  await rpage.goto(base + '/');
  await rpage.getByLabel('API token').fill(reader);
  await rpage.getByRole('button', { name: 'Sign in' }).click();
  await rpage.getByTestId('read-only').waitFor();
  await rpage.getByLabel('Find customer').fill(phone);
  await rpage.getByRole('button', { name: 'Search' }).click();
  await rpage.getByTestId('profile').waitFor();
  await rpage.getByTestId('timeline').waitFor();
  assert.equal(await rpage.getByTestId('add-tag').count(), 0, 'no tag form for a read token');
  assert.equal(await rpage.getByRole('button', { name: 'Revoke' }).count() + await rpage.getByRole('button', { name: 'Grant' }).count(), 0, 'no consent buttons for a read token');
  await rpage.goto(base + '/#/segments');
  await rpage.getByText('Saving a segment needs an admin token.').waitFor();
  assert.equal(await rpage.getByRole('button', { name: 'Save segment' }).count(), 0, 'no save button for a read token');
  await shot(rpage, '11-segments-read-only.png');
  const refused = await api('PUT', `/v1/segments/${id}_ro`, { name: 'x', condition }, reader);
  assert.equal(refused.status, 403, 'the server refuses a read token anyway');
  await ro.close();

  assert.deepEqual(problems, [], 'no script errors or CSP violations in the browser');
  step('console browser test: passed');
} catch (e) {
  console.error(problems.join('\n'));
  throw e;
} finally {
  await browser.close();
}
