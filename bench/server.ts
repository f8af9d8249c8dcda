/**
 * The bench's gateway in its own process (started by run.ts with `fork`, IPC channel), so the
 * server's event loop, CPU and memory are not mixed with the load generator's.
 *
 * Input: the parsed config as JSON in `OPENLORA_BENCH_CONFIG`. Output over IPC:
 *   → `{event: "listening", url}` once listening (or `{event: "error", message}` and exit 1);
 *   ← `{cmd: "measure-start"}`  resets the event-loop delay histogram and the peak RSS;
 *   → `{event: "measure", lagP99Ms, lagMaxMs, intervalP99Ms, peakRssMB, cpuMs}` for `{cmd: "measure-stop"}`;
 *   ← `{cmd: "close"}`          closes the server and exits 0 (so `--cpu-prof` writes its profile).
 * Bench-only: not part of the product surface (`npm start` is examples/server.ts).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Config } from '../config/schema.ts';
import { startServer, type RunningServer } from '../examples/server.ts';

type Msg = { cmd: 'measure-start' } | { cmd: 'measure-stop' } | { cmd: 'close' };

const send = (m: unknown) => process.send?.(m);

let running: RunningServer;
try {
  const config = JSON.parse(process.env.OPENLORA_BENCH_CONFIG ?? '') as Config;
  running = await startServer(config);
} catch (err) {
  send({ event: 'error', message: (err as Error).message });
  process.exit(1);
}

// NOTE(why): the histogram records the interval between its timer's ticks, so it has a floor of
// `resolution` (an idle loop shows ~10.1 ms; nodejs/node#62935, open-telemetry-js-contrib#2794):
// the lag is the recorded interval minus the resolution, the timer's lateness.
const RESOLUTION_MS = 10;
const lag = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
const lateness = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
let peakRss = 0;
let cpu0 = process.cpuUsage();
// unref: sampling must not keep the process alive; 50 ms as in client.ts.
const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 50);
rssTimer.unref();

process.on('message', (m: Msg) => {
  if (m.cmd === 'measure-start') {
    lag.disable();
    lag.reset();
    lag.enable();
    peakRss = process.memoryUsage.rss();
    cpu0 = process.cpuUsage();
  } else if (m.cmd === 'measure-stop') {
    lag.disable();
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
    const cpu = process.cpuUsage(cpu0);
    send({
      event: 'measure',
      lagP99Ms: lateness(lag.percentile(99)),
      lagMaxMs: lateness(lag.max),
      intervalP99Ms: lag.percentile(99) / 1e6,
      peakRssMB: peakRss / 2 ** 20,
      cpuMs: (cpu.user + cpu.system) / 1000,
    });
  } else if (m.cmd === 'close') {
    void running.close().finally(() => process.exit(0));
  }
});
// The parent went away without `close`: do not linger.
process.on('disconnect', () => void running.close().finally(() => process.exit(0)));

send({ event: 'listening', url: running.url });
