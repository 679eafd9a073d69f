// The datasync demo: a task list on a real SQLite database saved to IndexedDB. Its
// schema is a migration, the list and its counts are live queries (updated after a
// commit in any tab), and panels.js shows the metrics and a query's plan.
import { DataSync } from "../js/datasync.js";
import { renderMetrics, renderOldest, setupPlan } from "./panels.js";

const $ = (id) => document.getElementById(id);
const state = { db: null, filter: "all", worker: new URLSearchParams(location.search).has("worker"), offList: null };

// The longest task the page's main thread ran since navigation (what freezes it).
const mainThread = { longest: 0, count: 0 };
try {
  new PerformanceObserver((list) => {
    for (const task of list.getEntries()) {
      mainThread.count += 1;
      mainThread.longest = Math.max(mainThread.longest, task.duration);
    }
    renderMainThread();
  }).observe({ type: "longtask", buffered: true });
} catch { /* no Long Tasks API: the figure stays "–" */ }

// Every tab runs them at start; the leader applies what is pending, once. IF NOT
// EXISTS: databases made before the demo had migrations already have the table.
const MIGRATIONS = [{
  version: 1,
  name: "tasks",
  up: `CREATE TABLE IF NOT EXISTS tasks(
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL CHECK (length(trim(title)) > 0),
    done INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
  )`,
  down: "DROP TABLE tasks",
}];

function setBadge(kind, text) {
  const badge = $("badge");
  badge.className = `badge badge-${kind}`;
  badge.textContent = text;
}

function say(text, isError = false) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function ago(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

/** The list: a live query of the current filter (re-subscribed when it changes). */
async function watchList() {
  const where = { all: "", active: "WHERE done = 0", done: "WHERE done = 1" }[state.filter];
  const mine = (state.listing = (state.listing ?? 0) + 1);
  const off = await state.db.liveQuery(
    `SELECT id, title, done, created_at FROM tasks ${where} ORDER BY done, id DESC`, [],
    (rows) => { if (state.listing === mine) renderList(rows); });
  if (state.listing !== mine) return off(); // a newer filter was chosen meanwhile
  state.offList?.();
  state.offList = off;
}

function renderCounts([{ total, open }]) {
  $("counts").textContent = total ? `${open} open · ${total - open} done` : "";
  $("clear-done").disabled = total - open === 0;
}

function renderList(rows) {
  const list = $("list");
  list.replaceChildren(...rows.map((task) => {
    const li = document.createElement("li");
    li.className = "item" + (task.done ? " done" : "");
    li.dataset.id = task.id;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = !!task.done;
    box.setAttribute("aria-label", `Mark “${task.title}” ${task.done ? "not done" : "done"}`);
    box.addEventListener("change", () => act(() => state.db.execute("UPDATE tasks SET done = ? WHERE id = ?", [box.checked ? 1 : 0, task.id])));
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = task.title;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = ago(task.created_at);
    const del = document.createElement("button");
    del.className = "delete";
    del.title = "Delete";
    del.setAttribute("aria-label", `Delete “${task.title}”`);
    del.textContent = "×";
    del.addEventListener("click", () => act(() => state.db.execute("DELETE FROM tasks WHERE id = ?", [task.id])));
    li.append(box, title, when, del);
    return li;
  }));
  $("empty").hidden = rows.length > 0;
}

function renderMainThread() {
  const el = $("st-main");
  if (!el) return;
  el.textContent = mainThread.count
    ? `longest task ${Math.round(mainThread.longest)} ms` : "never blocked over 50 ms";
  el.title = `${mainThread.count} task(s) over 50 ms since the page opened`;
}

function renderStats() {
  if (!state.db) return;
  const s = state.db.stats();
  const leads = s.is_leader !== false;
  const lookups = s.cache_hits + s.cache_misses;
  $("st-version").textContent = s.version;
  $("st-blocks").textContent = `${s.blocks} × ${s.block_size / 1024} KiB`;
  $("st-dirty").textContent = s.dirty_blocks;
  $("st-hits").textContent = s.resident_blocks !== null
    ? "all in memory" : lookups ? `${Math.round((100 * s.cache_hits) / lookups)}%` : "–";
  // Only the leader flushes: a follower has no flush figures of its own to show.
  $("st-flushes").textContent = leads ? s.flushes : "–";
  $("st-flushes").title = leads ? "" : "the leader tab flushes for every tab";
  $("st-last").textContent = leads && s.last_flush_at
    ? new Date(s.last_flush_at * 1000).toLocaleTimeString([], { hour12: false }) : "–";
  $("st-last").title = leads && s.last_flush_at
    ? `took ${(s.last_flush_seconds * 1000).toFixed(1)} ms` : leads ? "" : "the leader tab flushes";
  renderMainThread();
}

/** Run a change and say `done` (or the error): true if it worked. The live queries
 * re-render what it changed. */
async function act(change, done = "") {
  try {
    await change();
    say(done);
    return true;
  } catch (err) {
    say(`${err.name}: ${err.message}`, true);
    return false;
  } finally {
    renderStats();
    renderMetrics(state.db);
  }
}

async function exportDatabase() {
  const bytes = await state.db.exportDatabase();
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/x-sqlite3" }));
  const a = Object.assign(document.createElement("a"), { href: url, download: "tasks.sqlite" });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  say(`Exported ${(bytes.length / 1024).toFixed(0)} KiB as a standard SQLite file.`);
}

async function importDatabase(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  await act(async () => {
    await state.db.importDatabase(bytes);
    await state.db.migrate(MIGRATIONS);
  }, `Imported ${file.name}.`);  // said only if the import worked
}

function showRole() {
  const info = state.db.getLeaderInfo();
  if (info.isLeader) setBadge("leader", "Leader");
  else setBadge("follower", info.leaderId ? "Follower" : "Electing…");
  $("badge").title = info.isLeader ? "This tab writes the database for every tab"
    : info.leaderId ? "Another tab writes; this one follows its changes live"
      : "The leader tab went away: a new one is being elected";
  $("lead").hidden = info.isLeader;
  $("st-epoch").textContent = info.epoch;
}

async function main() {
  try {
    state.db = await DataSync.open("tasks-demo", state.worker ? { worker: true } : {});
    await state.db.migrate(MIGRATIONS);
  } catch (err) {
    setBadge("error", "Unavailable");
    $("loading").hidden = true;
    say(`${err.name}: ${err.message}`, true);
    return;
  }
  showRole();
  setInterval(showRole, 1000);
  state.db.onChange(() => { renderStats(); showRole(); });
  $("lead").addEventListener("click", () => act(async () => { await state.db.requestLeadership(); showRole(); }));
  for (const id of ["new-title", "add-btn", "export", "import"]) $(id).disabled = false;
  $("worker").checked = state.worker;
  $("worker").addEventListener("change", () => {
    const url = new URL(location.href);
    if ($("worker").checked) url.searchParams.set("worker", "1"); else url.searchParams.delete("worker");
    location.assign(url);  // datasync runs where the page opened it: reload to switch
  });
  $("loading").hidden = true;
  $("add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("new-title");
    const title = input.value.trim();
    if (!title) return;
    input.value = "";
    act(() => state.db.execute("INSERT INTO tasks(title) VALUES (?)", [title]));
  });
  $("clear-done").addEventListener("click", () => act(() => state.db.execute("DELETE FROM tasks WHERE done = 1")));
  for (const chip of document.querySelectorAll("[data-filter]")) {
    chip.addEventListener("click", () => {
      state.filter = chip.dataset.filter;
      document.querySelectorAll("[data-filter]").forEach((c) => c.classList.toggle("active", c === chip));
      watchList();
    });
  }
  $("export").addEventListener("click", () => exportDatabase().catch((e) => say(`${e.name}: ${e.message}`, true)));
  $("import").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) importDatabase(file);
    event.target.value = "";
  });
  await state.db.liveQuery("SELECT count(*) AS total, coalesce(sum(done = 0), 0) AS open FROM tasks", [], renderCounts);
  await watchList();
  const explain = setupPlan(state.db, say);
  await explain().catch((err) => say(`${err.name}: ${err.message}`, true));
  const refresh = async () => {
    renderStats();
    await renderOldest(state.db, ago).catch(() => {});
    renderMetrics(state.db);
  };
  await refresh();
  setInterval(refresh, 1000);
  $("new-title").focus();
  window.datasyncDemo = state; // for tests and the curious
}

main();
