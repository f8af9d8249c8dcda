// Server-sent events over fetch (so the key can go in a header, which EventSource cannot send).

/**
 * Read `res`'s body as SSE and call `onData(text)` with each event's `data:` payload, until the
 * stream ends or `onData` returns true (stop).
 */
export async function readSse(res, onData) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of ev.split('\n')) {
        if (line.startsWith('data: ') && onData(line.slice(6)) === true) {
          reader.cancel().catch(() => {});
          return;
        }
      }
    }
  }
}
