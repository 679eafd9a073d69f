// The demo's app-layer panels: this tab's metrics (db.metrics(), refreshed every
// second) and the plan of a query (db.explain(): full scans flagged, the index that
// would serve them, one click to create it).
const $ = (id) => document.getElementById(id);

const ms = (value) => (value == null ? "–" : value < 10 ? value.toFixed(2) : value.toFixed(1));
const pct = (rate) => (rate == null ? "–" : `${Math.round(rate * 100)}%`);

const OLDEST = "SELECT min(created_at) AS at FROM tasks WHERE done = 0";

/** The oldest open task's age, through the query cache (10 s, or until a write to
 * tasks in any tab): refreshed every second, it is mostly hits. */
export async function renderOldest(db, ago) {
  const [{ at }] = await db.cached(OLDEST, [], { ttl: 10 });
  $("mt-oldest").textContent = at == null ? "none open" : ago(at);
}

/** Fill the metrics panel from db.metrics(); returns the figures shown. */
export function renderMetrics(db) {
  const m = db.metrics();
  if (!m) return null;
  const s = m.statements;
  const show = (id, text, title = "") => { $(id).textContent = text; $(id).title = title; };
  show("mt-statements", `${s.read} · ${s.write} · ${s.transaction}`,
    "statements this tab ran: reads · writes · transactions");
  const latency = (kind) => {
    const l = m.latency_ms[kind];
    return l.count ? `${ms(l.p50)} / ${ms(l.p95)} ms` : "–";
  };
  show("mt-read", latency("read"), "read latency, median / 95th percentile");
  show("mt-write", latency("write"), "write latency, median / 95th percentile (a follower's includes the trip to the leader)");
  const qc = m.query_cache;
  show("mt-cache", qc.hits + qc.misses ? `${pct(qc.hit_rate)} of ${qc.hits + qc.misses}` : "–",
    `db.cached(): ${qc.hits} hits, ${qc.misses} misses, ${qc.entries} entries`);
  show("mt-live", `${m.live_queries} · ${m.live_runs}`, "live queries open in this tab · how many times they ran");
  show("mt-tabs", `${m.tabs ?? "–"} · ${m.forwarded_writes}`,
    "tabs that have the database open · writes this tab sent to the leader tab (a follower's)");
  show("mt-errors", String(m.errors), Object.entries(m.errors_by_name).map(([k, v]) => `${k}: ${v}`).join(", "));
  $("mt-errors").classList.toggle("bad", m.errors > 0);
  return m;
}

const SAMPLES = [
  "SELECT id, title FROM tasks WHERE done = 0 ORDER BY id DESC",
  "SELECT count(*) AS n FROM tasks WHERE title LIKE 'B%'",
  "SELECT * FROM tasks WHERE id = 1",
];

function planNode(node) {
  const li = document.createElement("li");
  const detail = document.createElement("code");
  detail.textContent = node.detail;
  li.append(detail);
  if (node.full_scan) {
    li.classList.add("scan");
    const flag = document.createElement("span");
    flag.className = "flag";
    flag.textContent = "full scan";
    li.append(flag);
  }
  if (node.children.length) {
    const ul = document.createElement("ul");
    ul.append(...node.children.map(planNode));
    li.append(ul);
  }
  return li;
}

/** Wire the plan panel: explain the chosen query, show the tree and suggestions. */
export function setupPlan(db, say) {
  const select = $("plan-sql");
  select.replaceChildren(...SAMPLES.map((sql) => Object.assign(document.createElement("option"), { value: sql, textContent: sql })));
  const explain = async () => {
    const result = await db.explain(select.value);
    $("plan-tree").replaceChildren(...result.plan.map(planNode));
    $("plan-verdict").textContent = result.full_scans.length
      ? `Full scan of ${result.full_scans.join(", ")}` : "Every table is read through an index";
    $("plan-verdict").className = result.full_scans.length ? "verdict warn" : "verdict ok";
    $("plan-suggestions").replaceChildren(...result.suggestions.map((s) => {
      const li = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = s.sql;
      const create = Object.assign(document.createElement("button"), { className: "secondary small", textContent: "Create index" });
      create.addEventListener("click", async () => {
        try {
          await db.execute(s.sql);
          say(`Created the index on ${s.table}(${s.columns.join(", ")}).`);
        } catch (err) {
          say(`${err.name}: ${err.message}`, true);
        }
        await explain();
      });
      li.append(code, create);
      return li;
    }));
    return result;
  };
  const run = () => explain().catch((err) => say(`${err.name}: ${err.message}`, true));
  select.addEventListener("change", run);
  $("plan-run").addEventListener("click", run);
  return explain;
}
