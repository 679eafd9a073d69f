// A module Worker that runs datasync itself (as an app's own Worker would), for
// test_worker.py: it writes with flushes held back, then calls self.close().
import { openLocal } from "/js/local.js";

addEventListener("message", async (event) => {
  if (event.data?.op !== "write-then-close") return;
  const options = JSON.stringify({ flushInterval: 3600, tabs: false });
  const { handle } = await openLocal(event.data.name, options, { webURL: "/web/" });
  await handle.execute("CREATE TABLE t(x)", []);
  await handle.execute("INSERT INTO t VALUES (42)", []);
  postMessage({ dirtyBlocks: handle.stats().dirty_blocks });
  self.close(); // datasync's lifecycle hook flushes before the Worker ends
});
