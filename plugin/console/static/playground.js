// The playground: build a model string (base, adapter, or a composition of several adapters
// with a merge strategy), stream a chat completion, and compare two model strings side by side.
import { readSse } from './sse.js';

/** Streaming chat completion: calls `onText(delta)` per chunk; throws an Error with the server's message. */
export async function streamChat(fetchApi, body, onText, signal) {
  const res = await fetchApi('../v1/chat/completions', { method: 'POST', body: JSON.stringify({ ...body, stream: true }), signal });
  if (!res.ok) {
    let msg = `${res.status}`;
    try {
      msg = (await res.json()).error?.message ?? msg;
    } catch {}
    throw new Error(msg);
  }
  await readSse(res, (data) => {
    if (data === '[DONE]') return true;
    const j = JSON.parse(data);
    if (j.error) throw new Error(j.error.message);
    const d = j.choices?.[0]?.delta?.content;
    if (d) onText(d);
  });
}

/** One side of the playground. */
class Pane {
  /** @param root the pane element (from #pane-tpl); @param getModels () => [{name, adapters, compositions}] */
  constructor(root, getModels) {
    this.root = root;
    this.getModels = getModels;
    this.base = root.querySelector('.p-base');
    this.strategy = root.querySelector('.p-strategy');
    this.density = root.querySelector('.p-density');
    this.members = root.querySelector('.members');
    this.model = root.querySelector('.p-model');
    this.out = root.querySelector('.out');
    this.list = document.createElement('datalist');
    this.list.id = `adapters-${Math.random().toString(36).slice(2)}`;
    this.wholeList = document.createElement('datalist');
    this.wholeList.id = `${this.list.id}-models`;
    this.model.setAttribute('list', this.wholeList.id);
    root.append(this.list, this.wholeList);
    root.querySelector('.p-add').addEventListener('click', () => this.addMember('', 1));
    for (const el of [this.base, this.strategy, this.density]) el.addEventListener('change', () => this.compose());
    this.base.addEventListener('change', () => this.fillAdapters());
  }

  /** Refill the base list, the model-string suggestions (bases, named compositions) and the adapter suggestions. */
  refresh() {
    const models = this.getModels();
    const names = models.map((m) => m.name);
    // The model string input suggests bases and named compositions (a composition is a whole model string).
    const whole = [...names, ...models.flatMap((m) => m.compositions ?? [])];
    if (this.wholeList.options.length !== whole.length) this.wholeList.replaceChildren(...whole.map((n) => new Option(n)));
    if ([...this.base.options].map((o) => o.value).join('\n') !== names.join('\n')) {
      const keep = this.base.value;
      this.base.replaceChildren(...names.map((n) => new Option(n, n)));
      if (names.includes(keep)) this.base.value = keep;
      this.fillAdapters();
    }
  }

  /** Suggest the chosen base's adapters in the member inputs. */
  fillAdapters() {
    const m = this.getModels().find((x) => x.name === this.base.value);
    const opts = m ? [...m.adapters.map((a) => a.name)].sort() : [];
    if (this.list.options.length !== opts.length) this.list.replaceChildren(...opts.map((n) => new Option(n)));
    this.compose();
  }

  /** Add a member row (adapter name input with suggestions, weight, remove button). */
  addMember(name, weight) {
    const row = document.createElement('div');
    row.className = 'bar member';
    const n = document.createElement('input');
    n.className = 'm-name';
    n.placeholder = 'adapter';
    n.setAttribute('list', this.list.id);
    n.setAttribute('aria-label', 'Adapter');
    n.value = name;
    const w = document.createElement('input');
    w.className = 'm-weight';
    w.type = 'number';
    w.step = '0.1';
    w.value = String(weight);
    w.setAttribute('aria-label', 'Weight');
    const x = document.createElement('button');
    x.type = 'button';
    x.className = 'ghost';
    x.textContent = '×';
    x.setAttribute('aria-label', 'Remove adapter');
    x.addEventListener('click', () => {
      row.remove();
      this.compose();
    });
    for (const el of [n, w]) el.addEventListener('input', () => this.compose());
    row.append(n, w, x);
    this.members.append(row);
    this.compose();
    return row;
  }

  /** Members with a name, as [{name, weight}]. */
  memberList() {
    return [...this.members.querySelectorAll('.member')]
      .map((r) => ({ name: r.querySelector('.m-name').value.trim(), weight: Number(r.querySelector('.m-weight').value) }))
      .filter((m) => m.name);
  }

  /** Write the model string for the chosen base and members. */
  compose() {
    const base = this.base.value;
    const ms = this.memberList();
    const many = ms.length > 1;
    this.strategy.disabled = !many;
    this.density.disabled = !many || !['ties', 'dare_linear', 'dare_ties', 'magnitude_prune'].includes(this.strategy.value);
    if (ms.length === 0) this.model.value = base;
    else if (ms.length === 1 && ms[0].weight === 1) this.model.value = `${base}:${ms[0].name}`;
    else this.model.value = `${base}:${ms.map((m) => `${m.name}@${m.weight}`).join('+')}`;
  }

  /** The request fields for this pane: `model` and, for a composition other than cat, `merge`. */
  request() {
    const model = this.model.value.trim();
    const body = { model };
    if (model.includes('+') && this.strategy.value !== 'cat') {
      body.merge = { strategy: this.strategy.value };
      if (!this.density.disabled) body.merge.density = Number(this.density.value);
    }
    return body;
  }
}

/** The playground section: two panes (the second shown with "side by side"), one prompt. */
export class Playground {
  /** Wire the prompt, sampling inputs, Run button and the two panes. */
  constructor({ panes, template, prompt, run, compare, sampling, fetchApi, getModels }) {
    this.fetchApi = fetchApi;
    this.promptEl = prompt;
    this.sampling = sampling;
    this.panesEl = panes;
    this.compareEl = compare;
    this.panes = [0, 1].map(() => {
      const el = template.content.firstElementChild.cloneNode(true);
      panes.append(el);
      return new Pane(el, getModels);
    });
    this.panes[1].root.hidden = true;
    compare.addEventListener('change', () => this.layout());
    run.addEventListener('click', () => this.run());
    this.controllers = [];
  }

  /** One pane, or two side by side. */
  layout() {
    const two = this.compareEl.checked;
    this.panes[1].root.hidden = !two;
    this.panesEl.classList.toggle('two', two);
  }

  /** Refresh every pane's base and adapter lists from the live state. */
  refresh() {
    for (const p of this.panes) p.refresh();
  }

  /** Stream the prompt through every visible pane at once. */
  async run() {
    for (const c of this.controllers) c.abort();
    const active = this.panes.filter((p) => !p.root.hidden);
    this.controllers = active.map(() => new AbortController());
    const s = this.sampling();
    await Promise.all(
      active.map(async (p, i) => {
        p.out.textContent = '';
        p.out.classList.remove('error');
        p.out.dataset.state = 'streaming';
        try {
          await streamChat(
            this.fetchApi,
            { ...p.request(), ...s, messages: [{ role: 'user', content: this.promptEl.value }] },
            (t) => (p.out.textContent += t),
            this.controllers[i].signal,
          );
          p.out.dataset.state = 'done';
        } catch (err) {
          if (err.name === 'AbortError') return;
          p.out.textContent += `\n[error] ${err.message}`;
          p.out.classList.add('error');
          p.out.dataset.state = 'error';
        }
      }),
    );
  }
}
