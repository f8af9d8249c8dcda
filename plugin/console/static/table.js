// The adapter table: filter, sort and a virtual list (only the rows in view are in the DOM,
// reused as the list scrolls), so thousands of adapters cost a sort per update, not a reflow.

const TIER_ORDER = { device: 0, host: 1, disk: 2, remote: 3 };

/** Columns: key, header, cell class, formatter of a row (string). */
const COLUMNS = [
  ['name', 'name', 'c-name', (r) => r.name],
  ['tier', 'tier', 'c-tier', (r) => r.tier],
  ['slot', 'slot', 'c-slot num', (r) => (r.slot === null ? '–' : String(r.slot))],
  ['rank', 'rank', 'c-rank num', (r) => String(r.rank)],
  ['bytes', 'bytes', 'c-bytes num', (r) => formatBytes(r.bytes)],
  ['pins', 'pins', 'c-pins num', (r) => String(r.pins) + (r.operatorPinned ? ' 📌' : '')],
  ['served', 'requests', 'c-served num', (r) => String(r.served)],
  ['lastUsed', 'last used', 'c-last num', (r) => formatAgo(r.lastUsed)],
];

/** 1536 → "1.5 KiB"; null → "–". */
export function formatBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** Unix ms → "now", "12 s", "5 min", "3 h" ago; null → "never". */
export function formatAgo(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 1) return 'now';
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function compare(key, dir) {
  return (a, b) => {
    let x = a[key];
    let y = b[key];
    if (key === 'tier') {
      x = TIER_ORDER[x] ?? 9;
      y = TIER_ORDER[y] ?? 9;
    }
    if (x === null || x === undefined) x = -Infinity;
    if (y === null || y === undefined) y = -Infinity;
    const c = x < y ? -1 : x > y ? 1 : 0;
    return c !== 0 ? c * dir : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  };
}

/** A virtual, sortable, filterable table of adapter rows inside `root` (a scrolling element). */
export class AdapterTable {
  /**
   * @param {HTMLElement} root the scroll container
   * @param {(action: string, name: string, row: object) => void} onAction admin button clicks
   */
  constructor(root, onAction) {
    this.root = root;
    this.onAction = onAction;
    this.rows = new Map();
    this.view = [];
    this.sortKey = 'tier';
    this.sortDir = 1;
    this.filter = '';
    this.tier = '';
    this.admin = false;
    this.dirty = true;
    this.pool = [];
    this.head = document.createElement('div');
    this.head.className = 'head';
    this.head.setAttribute('role', 'row');
    for (const [key, label, cls] of COLUMNS) {
      const h = document.createElement('span');
      h.className = cls;
      h.textContent = label;
      h.dataset.key = key;
      h.setAttribute('role', 'columnheader');
      h.tabIndex = 0;
      this.head.append(h);
    }
    const acts = document.createElement('span');
    acts.className = 'c-acts';
    this.head.append(acts);
    this.spacer = document.createElement('div');
    this.spacer.style.position = 'relative';
    root.append(this.head, this.spacer);
    this.head.addEventListener('click', (e) => this.sortBy(e.target.dataset?.key));
    this.head.addEventListener('keydown', (e) => e.key === 'Enter' && this.sortBy(e.target.dataset?.key));
    root.addEventListener('scroll', () => this.draw(), { passive: true });
    this.spacer.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-act]');
      if (!b) return;
      const name = b.closest('.row').dataset.name;
      this.onAction(b.dataset.act, name, this.rows.get(name));
    });
    this.markSort();
  }

  /** Sort by column `key` (a second click reverses). */
  sortBy(key) {
    if (!key) return;
    this.sortDir = this.sortKey === key ? -this.sortDir : key === 'served' || key === 'lastUsed' || key === 'bytes' ? -1 : 1;
    this.sortKey = key;
    this.markSort();
    this.dirty = true;
    this.draw();
  }

  /** Show the sort column and direction in the header (aria-sort). */
  markSort() {
    for (const h of this.head.children) {
      if (h.dataset.key === this.sortKey) h.setAttribute('aria-sort', this.sortDir > 0 ? 'ascending' : 'descending');
      else h.removeAttribute('aria-sort');
    }
  }

  /** Replace every row. */
  setRows(rows) {
    this.rows = new Map(rows.map((r) => [r.name, r]));
    this.dirty = true;
  }

  /** Update or add `rows`; drop `removed` names. */
  update(rows, removed = []) {
    for (const r of rows) this.rows.set(r.name, r);
    for (const n of removed) this.rows.delete(n);
    if (rows.length || removed.length) this.dirty = true;
  }

  /** Show rows whose name contains `text` (case-insensitive) and whose tier is `tier` ('' = any). */
  setFilter(text, tier) {
    this.filter = text.trim().toLowerCase();
    this.tier = tier;
    this.dirty = true;
    this.root.scrollTop = 0;
  }

  /** Show the per-row admin buttons (pin, prefetch, unload) or not. */
  setAdmin(on) {
    if (this.admin !== on) {
      this.admin = on;
      for (const el of this.pool) el.remove();
      this.pool = [];
    }
  }

  /** Rows shown (after filter), in order. */
  get shown() {
    if (this.dirty) {
      const f = this.filter;
      const t = this.tier;
      this.view = [...this.rows.values()].filter((r) => (!f || r.name.toLowerCase().includes(f)) && (!t || r.tier === t));
      this.view.sort(compare(this.sortKey, this.sortDir));
      this.dirty = false;
    }
    return this.view;
  }

  /** A new pooled row element: one cell per column, then the admin buttons. */
  makeRow() {
    const el = document.createElement('div');
    el.className = 'row';
    el.setAttribute('role', 'row');
    for (const [, , cls] of COLUMNS) {
      const c = document.createElement('span');
      c.className = cls;
      c.setAttribute('role', 'cell');
      el.append(c);
    }
    const acts = document.createElement('span');
    acts.className = 'c-acts acts';
    if (this.admin) {
      for (const act of ['pin', 'prefetch', 'unload']) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'ghost';
        b.dataset.act = act;
        b.textContent = act;
        acts.append(b);
      }
    }
    el.append(acts);
    this.spacer.append(el);
    return el;
  }

  /** Lay out the rows in view (call after any change and on scroll). */
  draw() {
    const rows = this.shown;
    const rowH = parseFloat(getComputedStyle(this.root).getPropertyValue('--row')) || 30;
    const headH = this.head.offsetHeight || rowH;
    this.spacer.style.height = `${rows.length * rowH}px`;
    const top = Math.max(0, this.root.scrollTop - headH);
    const first = Math.max(0, Math.floor(top / rowH) - 5);
    const last = Math.min(rows.length, Math.ceil((top + this.root.clientHeight) / rowH) + 5);
    while (this.pool.length < last - first) this.pool.push(this.makeRow());
    for (let i = 0; i < this.pool.length; i++) {
      const el = this.pool[i];
      const r = rows[first + i];
      if (!r) {
        el.hidden = true;
        continue;
      }
      el.hidden = false;
      el.style.top = `${(first + i) * rowH}px`;
      el.dataset.name = r.name;
      el.dataset.tier = r.tier;
      const cells = el.children;
      for (let c = 0; c < COLUMNS.length; c++) {
        const text = COLUMNS[c][3](r);
        if (cells[c].textContent !== text) cells[c].textContent = text;
      }
      cells[1].className = `c-tier tier ${r.tier}`;
      cells[0].title = r.name;
      if (this.admin) {
        const pin = cells[COLUMNS.length].firstChild;
        pin.textContent = r.operatorPinned ? 'unpin' : 'pin';
        pin.dataset.act = r.operatorPinned ? 'unpin' : 'pin';
        cells[COLUMNS.length].children[1].disabled = r.tier === 'host' || r.tier === 'device';
      }
    }
  }
}
