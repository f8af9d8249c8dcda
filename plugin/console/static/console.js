// openlora console: signs in with an admin key (sessionStorage, Authorization: Bearer), reads
// the live state from api/events (server-sent events over fetch, so the key stays in a header),
// draws the figures, charts and adapter table, and runs the playground and admin actions.
import { AdapterTable } from './table.js';
import { Playground } from './playground.js';
import { readSse } from './sse.js';

const $ = (id) => document.getElementById(id);
const KEY = 'openlora.console.key';
const HISTORY_S = 300;

let key = sessionStorage.getItem(KEY) || '';
/** Per model: the latest ModelState and the chart columns. */
const models = new Map();
let current = '';
let runtimeUpdating = false;
let stream;

/** fetch with the admin key as a Bearer header and JSON bodies. */
function fetchApi(path, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (key) headers.authorization = `Bearer ${key}`;
  if (init.body) headers['content-type'] = 'application/json';
  return fetch(path, { ...init, headers, cache: 'no-store' });
}

function setConn(text, cls) {
  const el = $('conn');
  el.textContent = text;
  el.className = `conn ${cls || ''}`;
}

/** Show the key form (and forget every model figure shown so far). */
function askKey(why) {
  if (stream) stream.abort();
  models.clear();
  $('app').hidden = true;
  $('model').hidden = true;
  $('login').hidden = false;
  $('login-why').textContent = why;
  $('signout').hidden = !key;
  setConn('signed out', 'down');
  $('key').focus();
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  key = $('key').value.trim();
  $('key').value = '';
  sessionStorage.setItem(KEY, key);
  connect();
});
$('signout').addEventListener('click', () => {
  key = '';
  sessionStorage.removeItem(KEY);
  askKey('Key forgotten. Enter an admin key to continue.');
});

// ---- charts (uPlot) --------------------------------------------------------------------

const charts = {};
const CHART_DEFS = {
  'c-tps': [['tokens/s', 'tokensPerSecond', '#2f6fde']],
  'c-ttft': [['p50', 'ttftP50', '#2f6fde'], ['p99', 'ttftP99', '#e8590c']],
  'c-itl': [['p50', 'itlP50', '#2f6fde'], ['p99', 'itlP99', '#e8590c']],
  'c-seq': [['running', 'running', '#147a3d'], ['waiting', 'waiting', '#e8590c']],
};

function chartWidth(id) {
  return Math.max(120, $(id).clientWidth);
}

function makeCharts() {
  for (const [id, lines] of Object.entries(CHART_DEFS)) {
    const opts = {
      width: chartWidth(id),
      height: 130,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{ size: 28, font: '11px system-ui' }, { size: 46, font: '11px system-ui' }],
      series: [{}, ...lines.map(([label, , stroke]) => ({ label, stroke, width: 1.5, spanGaps: false, points: { show: false } }))],
    };
    charts[id] = new uPlot(opts, [[], ...lines.map(() => [])], $(id));
  }
  new ResizeObserver(() => {
    for (const id of Object.keys(charts)) charts[id].setSize({ width: chartWidth(id), height: 130 });
  }).observe(document.querySelector('.charts'));
}

function drawCharts() {
  const m = models.get(current);
  if (!m || !charts['c-tps']) return;
  for (const [id, lines] of Object.entries(CHART_DEFS)) charts[id].setData([m.series.t, ...lines.map(([, k]) => m.series[k])]);
}

function appendPoint(series, p) {
  for (const k of Object.keys(series)) series[k].push(p[k]);
  const cut = p.t - HISTORY_S;
  let n = 0;
  while (n < series.t.length && series.t[n] < cut) n++;
  if (n) for (const k of Object.keys(series)) series[k].splice(0, n);
}

// ---- figures and table ------------------------------------------------------------------

const table = new AdapterTable($('table'), adminAction);
$('filter').addEventListener('input', () => {
  table.setFilter($('filter').value, $('tier-filter').value);
  table.draw();
});
$('tier-filter').addEventListener('change', () => {
  table.setFilter($('filter').value, $('tier-filter').value);
  table.draw();
});
$('model').addEventListener('change', () => selectModel($('model').value));

function selectModel(name) {
  current = name;
  const m = models.get(name);
  table.setRows(m ? [...m.rows.values()] : []);
  table.draw();
  drawFigures();
  drawCharts();
}

function drawFigures() {
  const m = models.get(current);
  if (!m) return;
  const s = m.state;
  const kv = s.kv;
  if (kv) {
    $('kv').textContent = `${kv.used} used · ${kv.free} free · ${kv.cached} cached of ${kv.total}`;
    const [u, c] = $('kvbar').children;
    u.style.width = `${(100 * kv.used) / kv.total}%`;
    c.style.width = `${(100 * kv.cached) / kv.total}%`;
  } else $('kv').textContent = 'not reported';
  $('running').textContent = s.sequences.running;
  $('waiting').textContent = s.sequences.waiting;
  const tiers = { device: 0, host: 0, disk: 0, remote: 0 };
  for (const r of m.rows.values()) tiers[r.tier] = (tiers[r.tier] || 0) + 1;
  $('tiers').textContent = `${tiers.device}/${s.maxLoras} device · ${tiers.host} host · ${tiers.disk + tiers.remote} disk`;
  $('count').textContent = `${m.rows.size}`;
  const tps = m.series.tokensPerSecond[m.series.tokensPerSecond.length - 1];
  $('tps').textContent = tps === null || tps === undefined ? '–' : tps.toFixed(1);
}

function onState(st) {
  runtimeUpdating = st.runtimeUpdating;
  models.clear();
  for (const s of st.models) {
    models.set(s.name, { state: s, rows: new Map(s.adapters.map((r) => [r.name, r])), series: st.series[s.name] });
  }
  const sel = $('model');
  sel.replaceChildren(...st.models.map((s) => new Option(s.name, s.name)));
  sel.hidden = st.models.length < 2;
  if (!models.has(current)) current = st.models[0]?.name ?? '';
  sel.value = current;
  $('login').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = !key;
  $('load').hidden = !runtimeUpdating;
  table.setAdmin(runtimeUpdating);
  if (!charts['c-tps']) makeCharts();
  playground.refresh();
  selectModel(current);
}

function onTick(ev) {
  for (const t of ev.models) {
    const m = models.get(t.name);
    if (!m) continue;
    const { adapters, removed, point, ...state } = t;
    m.state = { ...m.state, ...state };
    for (const r of adapters) m.rows.set(r.name, r);
    for (const n of removed) m.rows.delete(n);
    if (point) appendPoint(m.series, point);
    if (t.name === current) {
      table.update(adapters, removed);
      if (point) drawCharts();
    }
  }
  table.draw(); // "last used" ages even when nothing changed
  drawFigures();
  if (ev.models.some((t) => t.adapters.length || t.removed.length)) playground.refresh();
}

// ---- live stream --------------------------------------------------------------------------

/** Read api/events until it ends; 401/403 ask for a key, other failures retry in a second. */
async function connect() {
  if (stream) stream.abort();
  const ctl = new AbortController();
  stream = ctl;
  setConn('connecting…');
  let res;
  try {
    res = await fetchApi('api/events', { signal: ctl.signal });
  } catch {
    if (!ctl.signal.aborted) retry(ctl);
    return;
  }
  if (res.status === 401 || res.status === 403) {
    let msg = '';
    try {
      msg = (await res.json()).error?.message ?? '';
    } catch {}
    askKey(res.status === 403 ? `This key has no admin rights (403). ${msg}` : key ? `The key was refused (401). ${msg}` : 'This server needs an admin API key.');
    return;
  }
  if (!res.ok) return retry(ctl);
  setConn('live', 'live');
  try {
    await readSse(res, (data) => {
      const ev = JSON.parse(data);
      if (ev.type === 'state') onState(ev);
      else if (ev.type === 'tick') onTick(ev);
    });
  } catch (err) {
    if (!ctl.signal.aborted) console.error(err);
  }
  if (!ctl.signal.aborted) retry(ctl);
}

function retry(ctl) {
  if (stream !== ctl) return;
  setConn('reconnecting…', 'down');
  setTimeout(() => stream === ctl && connect(), 1000);
}

// ---- admin actions ------------------------------------------------------------------------

async function post(path, body) {
  const res = await fetchApi(path, { method: 'POST', body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) {
    let msg = text;
    try {
      msg = JSON.parse(text).error?.message ?? text;
    } catch {}
    throw new Error(msg);
  }
  return text;
}

/** Row buttons: pin / unpin / prefetch / unload, through the admin routes. */
async function adminAction(act, name) {
  const msg = $('action-msg');
  if (act === 'unload' && !confirm(`Unload adapter ${name}?`)) return;
  msg.textContent = `${act} ${name}…`;
  try {
    await post(`../v1/${act}_lora_adapter`, { lora_name: name, model: current });
    msg.textContent = `${act} ${name}: done`;
  } catch (err) {
    msg.textContent = `${act} ${name}: ${err.message}`;
  }
}

$('load').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData($('load'));
  const name = String(f.get('lora_name'));
  $('action-msg').textContent = `loading ${name}…`;
  try {
    await post('../v1/load_lora_adapter', { lora_name: name, lora_path: String(f.get('lora_path')), model: current });
    $('action-msg').textContent = `loaded ${name}`;
    $('load').reset();
  } catch (err) {
    $('action-msg').textContent = `load ${name}: ${err.message}`;
  }
});

// ---- playground ---------------------------------------------------------------------------

const playground = new Playground({
  panes: $('panes'),
  template: $('pane-tpl'),
  prompt: $('prompt'),
  run: $('run'),
  compare: $('compare'),
  fetchApi,
  getModels: () => [...models.values()].map((m) => ({ name: m.state.name, adapters: [...m.rows.values()], compositions: m.state.compositions })),
  sampling: () => {
    const out = { temperature: Number($('temperature').value), top_p: Number($('top_p').value), max_tokens: Number($('max_tokens').value) };
    if ($('seed').value !== '') out.seed = Number($('seed').value);
    return out;
  },
});

connect();
