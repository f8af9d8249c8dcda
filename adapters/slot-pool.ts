/**
 * The device tier: the engine's adapter slots (vLLM `LRUCacheLoRAModelManager`'s active-adapter
 * LRU). The only caller of the engine's `loadAdapter` / `unloadAdapter`.
 *
 * At most `maxLoras` adapters are resident. A load with every slot taken evicts the least
 * recently used unpinned adapter *before* loading; when every slot is pinned it waits up to
 * `slotWaitMs` for a release, then answers 503 (naming the slots an operator pinned, if any). Pins
 * are counted by the caller (the manager) on the adapter's `DeviceState`; the pool never evicts a
 * pinned adapter.
 *
 * What a slot costs depends on the backend: the CPU stores each adapter at its exact rank
 * (allocated per adapter, no padding); CUDA sizes every slot of its per-(layer, module) pools at
 * `maxLoraRank` rows (native/cuda/forward.cu `reserveAdapters`), so there a slot costs
 * maxLoraRank rows whatever the adapter's rank, and only its first `rank` rows are used.
 */
import type { Engine } from '../native/engine.ts';
import type { AdapterLoadSpec } from '../native/types.ts';
import { NativeError, wrapNativeError } from '../native/errors.ts';
import { AdapterError } from './errors.ts';
import type { TierMetrics } from './metrics.ts';
import type { Logger } from './types.ts';

/** The device tier's state of one adapter (kept on its registry entry). */
export interface DeviceState {
  /** Engine slot while resident, else null. */
  slot: number | null;
  /** Live leases plus acquires in progress; an adapter with pins > 0 is never evicted. */
  pins: number;
  /** Of `pins`, those an operator holds (POST /v1/pin_lora_adapter: AcquireOptions.operator). */
  operatorPins: number;
  /** LRU clock value of the last acquire or release. */
  lastUsed: number;
  /** Unix ms of the last acquire or release (shown to operators; the LRU uses `lastUsed`). */
  lastUsedAt: number;
  /** Acquires that got a lease (requests served). */
  served: number;
  /** The single in-flight load, shared by concurrent acquires. */
  loading: Promise<void> | null;
  /**
   * fileStamp (adapters/content-id.ts) of the files the resident weights were read from, or null
   * when not resident: a different stamp on disk means the files changed since the upload.
   */
  stamp: string | null;
  /** A changed stamp whose files were invalid (the resident version kept serving): not re-read until the files change again. */
  refusedStamp: string | null;
}

/** What the pool needs to know of an adapter. */
export interface SlotHolder {
  /** Adapter name (log lines and error messages). */
  readonly name: string;
  device: DeviceState;
}

/**
 * What an engine refusal of `loadAdapter` becomes: a bad file, a missing tensor or a rank above
 * maxLoraRank stays the client's fault (`invalid_adapter`, 400), "no free slot" stays a retryable
 * `no_free_slot` (503), and anything else (device failure, engine bug) keeps its NativeError code
 * (500), prefixed with the adapter.
 */
function engineRefusal(name: string, path: string, err: unknown): Error {
  const n = wrapNativeError(err);
  // The engine's own message usually starts with the file already: name it once.
  const message = `adapter ${name}: the engine refused ${n.message.startsWith(path) ? n.message : `${path}: ${n.message}`}`;
  if (n.code === 'bad_file' || n.code === 'not_found' || n.code === 'invalid_argument') return new AdapterError(message, 'invalid_adapter', { cause: n });
  if (n.code === 'no_free_slot') return new AdapterError(message, 'no_free_slot', { param: null, cause: n });
  return new NativeError(message, n.code, null, { cause: n });
}

/** A new, non-resident device state. */
export function emptyDeviceState(): DeviceState {
  return { slot: null, pins: 0, operatorPins: 0, lastUsed: 0, lastUsedAt: 0, served: 0, loading: null, stamp: null, refusedStamp: null };
}

/** The engine's adapter slots of one base model. */
export class SlotPool {
  private readonly resident = new Set<SlotHolder>();
  /** Resident adapters plus loads holding a reservation; never above maxLoras. */
  private used = 0;
  private clock = 0;
  private readonly waiters = new Set<() => void>();
  /** Loads that found every slot pinned and waited. */
  slotWaits = 0;
  /** Loads that gave up waiting (503). */
  slotTimeouts = 0;
  /** Called after the pool freed an adapter's slot (eviction or unload). */
  onUnload?: (h: SlotHolder) => void;

  /**
   * @param engine The engine the base model was loaded into.
   * @param maxLoras Slots (the engine's `info().maxLoras`).
   * @param slotWaitMs How long a load waits for a pinned slot before 503 (ms).
   * @param metrics Where the `device` uploads, failures and evictions are counted.
   * @param log Upload, eviction and refusal log lines.
   */
  constructor(
    private readonly engine: Pick<Engine, 'loadAdapter' | 'unloadAdapter'>,
    readonly maxLoras: number,
    readonly slotWaitMs: number,
    private readonly metrics: TierMetrics,
    private readonly log: Logger,
  ) {}

  /** Adapters resident now. */
  get size(): number {
    return this.resident.size;
  }

  /** Slots counted as used (resident + loads holding a reservation). */
  get slotsInUse(): number {
    return this.used;
  }

  /**
   * What holds the slots, for a 503 that found none free: running requests, and the resident
   * adapters an operator pinned when there are any ("in use: 3 pinned by an operator ...").
   */
  holders(): string {
    const pinned = this.operatorPinned();
    let running = 0;
    for (const h of this.resident) if (h.device.operatorPins === 0 && h.device.pins > 0) running++;
    if (pinned === 0) return 'in use by running requests';
    const free = this.maxLoras - pinned - running;
    return `in use: ${pinned} pinned by an operator (POST /v1/unpin_lora_adapter releases them), ${running} by running requests${free > 0 ? `, ${free} free or evictable` : ''}`;
  }

  /** Resident adapters an operator pinned, those in `except` not counted. */
  operatorPinned(except?: ReadonlySet<SlotHolder>): number {
    let n = 0;
    for (const h of this.resident) if (h.device.operatorPins > 0 && !except?.has(h)) n++;
    return n;
  }

  /** Mark `h` most recently used. */
  touch(h: SlotHolder): void {
    h.device.lastUsed = ++this.clock;
  }

  /**
   * Count one slot as used for a coming `upload`: a free one, else evict the LRU unpinned
   * adapter, else wait (bounded). Pair with `upload` or `unreserve`.
   * @returns whether it waited.
   * @throws AdapterError `no_free_slot` when every slot stays pinned for `slotWaitMs`.
   */
  async reserve(name: string): Promise<boolean> {
    const deadline = performance.now() + this.slotWaitMs;
    let waited = false;
    for (;;) {
      if (this.used < this.maxLoras || this.evictOne()) {
        this.used++;
        return waited;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        this.slotTimeouts++;
        throw new AdapterError(
          `adapter ${name}: all ${this.maxLoras} adapter slots are ${this.holders()} (waited ${this.slotWaitMs} ms); retry later`,
          'no_free_slot',
          { param: null },
        );
      }
      if (!waited) this.slotWaits++;
      waited = true;
      await this.waitForRelease(left);
    }
  }

  /**
   * Count `k` slots as used now, for `k` coming uploads, evicting least recently used unpinned
   * adapters outside `keep` as needed; all or nothing: false (nothing changed) when free plus
   * evictable slots are fewer than `k`. Synchronous, so no other request can take them between
   * the check and the reservation. Pair each with `upload` or `unreserve`.
   */
  reserveNow(k: number, keep: ReadonlySet<SlotHolder>): boolean {
    const free = this.maxLoras - this.used;
    const evictable = [...this.resident].filter((h) => h.device.pins === 0 && !keep.has(h)).sort((a, b) => a.device.lastUsed - b.device.lastUsed);
    if (free + evictable.length < k) return false;
    for (let i = 0; i < k - free; i++) {
      if (!this.unload(evictable[i]!, 'adapter evicted (LRU)')) return false;
      this.metrics.count('device', 'evictions');
    }
    this.used += k;
    return true;
  }

  /** Resolve at the next release or unload (`wake`), or after `ms`. */
  waitForRelease(ms: number): Promise<void> {
    return new Promise<void>((res) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        res();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /** Give back a reservation that will not be uploaded into. */
  unreserve(): void {
    this.used--;
    this.wake();
  }

  /**
   * Upload `spec` into the slot reserved for `h` (a failure keeps the reservation: `unreserve`).
   * @throws AdapterError naming the file when the engine refuses it (see `engineRefusal`);
   *   NativeError when the engine fails otherwise (device failure).
   */
  async upload(h: SlotHolder, spec: AdapterLoadSpec): Promise<void> {
    this.metrics.count('device', 'loads');
    const t0 = performance.now();
    let slot: number;
    try {
      slot = await this.engine.loadAdapter(spec);
    } catch (err) {
      throw engineRefusal(h.name, spec.path, err);
    }
    h.device.slot = slot;
    this.resident.add(h);
    const ms = performance.now() - t0;
    this.metrics.observeLoad('device', ms / 1000);
    this.log.info({ adapter: h.name, slot, ms: Math.round(ms) }, 'adapter loaded');
  }

  /** Free `h`'s slot in the engine; false (logged) when the engine refuses. */
  unload(h: SlotHolder, why: string): boolean {
    const slot = h.device.slot;
    try {
      this.engine.unloadAdapter(slot!);
    } catch (err) {
      this.log.error({ adapter: h.name, slot, err: (err as Error).message }, 'adapter unload failed');
      return false;
    }
    this.log.info({ adapter: h.name, slot }, why);
    this.resident.delete(h);
    h.device.slot = null;
    h.device.stamp = h.device.refusedStamp = null;
    this.used--;
    this.onUnload?.(h);
    this.wake();
    return true;
  }

  /**
   * Hand `from`'s resident slot to `to` (the retired version of an adapter whose files changed:
   * `to.device` is the state `from` had; `from` gets a new, non-resident one from the caller).
   */
  rehome(from: SlotHolder, to: SlotHolder): void {
    if (this.resident.delete(from)) this.resident.add(to);
  }

  /** Wake every load waiting for a slot (a pin was released); each re-checks. */
  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Unload the least recently used unpinned resident adapter; false when all are pinned. */
  private evictOne(): boolean {
    const candidates = [...this.resident].filter((h) => h.device.pins === 0).sort((a, b) => a.device.lastUsed - b.device.lastUsed);
    for (const h of candidates) {
      if (this.unload(h, 'adapter evicted (LRU)')) {
        this.metrics.count('device', 'evictions');
        return true;
      }
    }
    return false;
  }
}
