/**
 * Resident adapters that follow their files (adapters/manager.ts): when a resident local adapter's
 * files change on disk, its resident version is retired and the new one loaded, while running
 * requests finish on the old one.
 *
 * The old version keeps its slot under a holder of its own (SlotPool.rehome) until both its last
 * request has ended and the new version is uploaded: if the upload fails (the engine refuses the
 * new weights, or no slot could be had), the old version is put back as the adapter's current one
 * and keeps serving, as it does when the new files fail the host tier's checks (NaN values
 * included). Only then is a new version's failure the request's 400.
 * Remote sources (URLs, hub revisions) are immutable downloads: never checked.
 */
import { fileStamp } from './content-id.ts';
import { AdapterError } from './errors.ts';
import type { AdapterEntry } from './registry.ts';
import { emptyDeviceState, type DeviceState, type SlotHolder, type SlotPool } from './slot-pool.ts';
import type { SpecCache } from './spec-cache.ts';
import type { Logger } from './types.ts';

/** The retired versions of one base model's adapters. */
export class AdapterVersions {
  /** Old versions still holding a slot: device state → its holder in the slot pool. */
  private readonly retired = new Map<DeviceState, SlotHolder>();
  /** Per adapter whose new version is loading: its old version, and the new files' stamp. */
  private readonly previous = new Map<AdapterEntry, { holder: SlotHolder; stamp: string }>();

  /**
   * @param slots The slot pool (rehome, unload).
   * @param specs The host tier (validates the new files before anything is retired).
   * @param log Change, refusal and restore log lines.
   */
  constructor(
    private readonly slots: SlotPool,
    private readonly specs: SpecCache,
    private readonly log: Logger,
  ) {}

  /** Old versions still holding a slot (counted as draining and pinned). */
  get size(): number {
    return this.retired.size;
  }

  /**
   * Before an acquire of `e`: when it is a resident local adapter whose files changed since its
   * weights were uploaded and the new files pass the host tier's checks (read now), retire the
   * resident version, so that the acquire loads the new one. New files that fail the checks keep
   * the resident version (logged once per change: `DeviceState.refusedStamp`).
   */
  async follow(e: AdapterEntry): Promise<void> {
    const dev = e.device;
    if (e.source.kind !== 'local' || dev.slot === null || dev.loading || dev.stamp === null) return;
    const stamp = await fileStamp(e.parsed.dir);
    if (stamp === dev.stamp || stamp === dev.refusedStamp) return;
    try {
      await this.specs.fresh(e);
    } catch (err) {
      if (e.device === dev) this.refuse(e, stamp, err);
      return;
    }
    // Re-checked after the awaits: another acquire may have followed (or evicted) already.
    if (e.device !== dev || dev.slot === null || dev.loading || e.removed || e.host.identity?.stamp === dev.stamp) return;
    this.log.info({ adapter: e.name, running: dev.pins }, 'adapter files changed on disk: loading the new version');
    const old: SlotHolder = { name: e.name, device: dev };
    this.slots.rehome(e, old);
    this.retired.set(dev, old);
    this.previous.set(e, { holder: old, stamp: e.host.identity?.stamp ?? stamp });
    e.device = emptyDeviceState();
  }

  /**
   * Release one pin of `dev`, a version of `e` that is no longer its current one: a retired
   * version (unloaded when its last pin goes, unless it still stands in for a loading new one) or
   * a failed load's. @returns false when `dev` is `e`'s current version (the caller's case).
   */
  release(e: AdapterEntry, dev: DeviceState): boolean {
    if (dev === e.device) return false;
    dev.pins--;
    const old = this.retired.get(dev);
    if (old && dev.pins === 0 && this.previous.get(e)?.holder !== old) this.unload(old, 'old version of a changed adapter drained');
    return true;
  }

  /** `e`'s new version is uploaded: its old version goes now if no request uses it (else when the last ends). */
  loaded(e: AdapterEntry): void {
    const p = this.previous.get(e);
    if (!p) return;
    this.previous.delete(e);
    if (p.holder.device.pins === 0) this.unload(p.holder, 'old version of a changed adapter unloaded');
  }

  /**
   * `e`'s new version failed to load (`err`): its old version, when still resident, becomes its
   * current one again (an `invalid_adapter` refusal marks the new files refused until they change).
   * @returns whether the old version was put back (the caller may acquire it).
   */
  failed(e: AdapterEntry, err: Error): boolean {
    const p = this.previous.get(e);
    if (!p) return false;
    this.previous.delete(e);
    const old = p.holder.device;
    if (old.slot === null) return false;  // evicted meanwhile
    if (e.removed || e.device.slot !== null) {  // nothing to put it back into: it drains as an old version
      if (old.pins === 0) this.unload(p.holder, 'old version of a changed adapter unloaded');
      return false;
    }
    this.retired.delete(old);
    this.slots.rehome(p.holder, e);
    e.device = old;
    if (err instanceof AdapterError && err.code === 'invalid_adapter') this.refuse(e, p.stamp, err);
    else this.log.warn({ adapter: e.name, err: err.message }, 'the new version of a changed adapter failed to load: the resident version keeps serving');
    return true;
  }

  /** The slot pool unloaded `h` (LRU eviction of an unpinned old version): forget it. */
  unloaded(h: SlotHolder): void {
    this.retired.delete(h.device);
    for (const [e, p] of this.previous) if (p.holder === h) this.previous.delete(e);
  }

  private refuse(e: AdapterEntry, stamp: string, err: unknown): void {
    e.device.refusedStamp = stamp;
    this.log.warn({ adapter: e.name, err: err instanceof Error ? err.message : String(err) }, 'adapter files changed on disk but cannot be loaded: the resident version keeps serving');
  }

  private unload(h: SlotHolder, why: string): void {
    this.retired.delete(h.device);
    this.slots.unload(h, why);
  }
}
