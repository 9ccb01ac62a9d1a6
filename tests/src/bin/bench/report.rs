//! The table: printed as it is measured and written to `docs/BENCHMARKS.md` at the end.
use std::time::Duration;

pub struct Row {
    pub what: String,
    pub runs: String,
    pub p50: String,
    pub p99: String,
    pub note: String,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of milliseconds (`p` in 0..=1).
pub fn pct(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

impl Report {
    pub fn header() {
        println!(
            "{:<58} {:>6} {:>10} {:>10}  note",
            "measurement", "runs", "p50", "p99"
        );
    }

    pub fn add(&mut self, what: &str, runs: impl ToString, p50: String, p99: String, note: String) {
        let row = Row {
            what: what.to_string(),
            runs: runs.to_string(),
            p50,
            p99,
            note,
        };
        println!(
            "{:<58} {:>6} {:>10} {:>10}  {}",
            row.what, row.runs, row.p50, row.p99, row.note
        );
        self.rows.push(row);
    }

    /// A latency row from samples in milliseconds; returns (p50, p99).
    pub fn latency(&mut self, what: &str, samples: &[f64], note: String) -> (f64, f64) {
        let (p50, p99) = (pct(samples, 0.5), pct(samples, 0.99));
        self.add(
            what,
            samples.len(),
            format!("{p50:.2} ms"),
            format!("{p99:.2} ms"),
            note,
        );
        (p50, p99)
    }

    pub fn markdown(&self, machine: &str, mode: &str, targets: &[String]) -> String {
        let mut s = String::from(
            "# Lamina — benchmarks\n\nWritten by `lamina-bench` (`tests/src/bin/lamina-bench.rs`); do not edit by hand, run\n\
             `/var/tmp/lamina-target/debug/lamina-bench` (quick) or `... --full` as root after\n\
             `cargo build --workspace --bins --lib`. Peers run the same handler in the same run; compare ratios,\n\
             absolute times drift on shared machines.\n\n",
        );
        s.push_str(&format!("- machine: {machine}\n- mode: {mode}\n\n"));
        s.push_str("| measurement | runs | p50 | p99 | note |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.what, r.runs, r.p50, r.p99, r.note
            ));
        }
        s.push_str("\n## Targets\n\n");
        for t in targets {
            s.push_str(&format!("- {t}\n"));
        }
        s.push_str(NOTES);
        s
    }
}

/// What the rows measure and what bounds the misses (kept with the code that measures them).
const NOTES: &str = r#"
## How to read this

- **Layers.** "sandbox layer" rows come from `lamina-sandbox-bench` (worker library, no gRPC): from
  the start of the sandbox (or the bind of a prepared one) to the handler's answer on the Runtime API.
  "end to end" rows go SDK -> controller -> worker -> sandbox -> back, as `fnctl invoke` does.
  "worker share" sends `Worker.Invoke` straight to the worker, so the controller's part (signature
  check, qualifier resolution from its cache, concurrency permit, placement, the signed call to the
  worker, the log queued for its writer) is the difference.
- **Peers** run the same handler (`import app; app.handler({}, None)`) in a fresh process each run:
  bare `python3.11`, `bwrap --unshare-all` with `/usr` and the code bound read-only, and `runc run`
  with a rootfs of bind mounts (`/usr`, the code) built in the run's temp dir (no registry).
  Lamina's cold starts do more than the peers: the Lambda bootstrap, its Runtime API client and
  logging setup, the handler's import, one HTTP round trip each way.
- **Fast path** (see `docs/ARCHITECTURE.md`, worker): the spawner forks sandbox inits (default);
  emptied cgroups are reused (`--cgroup-reuse`, default 16; network namespaces are not: a used one
  keeps counters and TIME_WAIT sockets a function could read); idle sandboxes are frozen only after
  `--freeze-after-ms` (default 50), so back-to-back invocations skip the freeze and thaw;
  `LAMINA_PREWARM_SANDBOXES=N` keeps N prepared sandboxes (cgroup, namespaces, function-independent
  root, Runtime API socket) ahead of requests; `LAMINA_PYTHON_ZYGOTE=1` forks Python sandboxes from a
  pre-imported interpreter. On the controller, function configurations come from a coherent
  in-memory cache and invocation logs are written in the background, batched.
- **No-op invocations** run back to back from N concurrent clients for the sustained phase, on
  Lamina's Python runtime and on `lamina-noop-runtime` (a `provided` function whose bootstrap is a
  few dozen lines of Rust on a blocking socket), so the platform's own cost shows. "CPU each" is the
  whole machine's busy time (client, controller, worker, runtimes, kernel) per invocation.
- **Memory** is Private_Clean + Private_Dirty of every process in the sandbox's cgroup (the outer
  init, the sandbox's pid 1 and the runtime) from `/proc/PID/smaps_rollup`, and the cgroup's kernel memory
  (`memory.kmem.usage_in_bytes`); a network namespace adds ~0.2 MB of kernel memory not charged to it.
- **Bursts: cold, provisioned, warm** (`bench/concurrency.rs`) run on three workers, each in its own
  network namespace (a separate host reached over veth, as `deploy/cluster.sh` builds), with worker
  defaults (no pool, no zygote) and a 1 s keep-alive. Each round publishes two fresh versions of one
  Python function (1769 MB = 1 vCPU, handler sleeping 200 ms, subtracted from every latency): one
  gets B provisioned sandboxes ("put -> READY": until `READY` with all B available), the other none.
  Then B concurrent invocations on the provisioned sandboxes (their first use), the same burst again
  (warm: the sandboxes idle warm) and B on the other version (cold: each builds its sandbox, B at
  once on 2 cores); the round ends when no worker reports a sandbox. "started a sandbox" counts
  `REPORT` lines with an `Init Duration`; a provisioned invocation with one, or in a sandbox whose
  `AWS_LAMBDA_INITIALIZATION_TYPE` is not `provisioned-concurrency`, is a violation (see Targets).
  Provisioned is warm from its first invocation: the init ran ahead of time, what remains is the
  warm path with B invocations sharing the machine.
- **100 concurrent cold starts** (one worker on loopback; three netns workers): each invocation
  holds its sandbox 10 s, longer than starting all hundred takes, so none can reuse a sandbox
  another one freed ("cold" counts the `Init Duration`s). A worker starts at most 8 sandboxes at a
  time (`--cold-starts-per-worker`), the rest wait for a slot; "per worker" counts where each ran.
- **HTTP gateway** (`bench/gateway.rs`): `wrk --latency` (Debian's; 1 thread for 1 connection, 2
  for 16) against the function URL of a warm `lamina-noop-runtime` function (1769 MB, one vCPU's
  CFS share: a smaller function's quota throttles its sandbox under back-to-back load), after a 1 s
  warm-up that starts the sandboxes the concurrency needs. Beside it, in the same run: a hyper
  server in the bench process answering the gateway's own status, headers and body (the floor:
  loopback, HTTP/1.1 and wrk itself), and the same function invoked directly through the SDK from
  as many tasks. The overhead is the gateway's p50 minus the direct Invoke's; it can be negative:
  the direct path signs each request and frames it in gRPC on the client's side, wrk sends plain
  HTTP/1.1.

## What bounds the misses (and the near misses)

- **No-op invocations/s**: every invocation crosses four processes and three protocol stacks
  (gRPC twice, HTTP/1.1 on the Runtime API); the two cores are saturated ("cores busy"), so the
  rate is CPU per invocation. The profile is flat: about half is the kernel (scheduling, wake-ups
  — IPIs on this VM — and the TCP loopback path), most of the rest h2/hyper framing, tokio and
  malloc; Lamina's own code is a few percent. Deeper queues amortise wake-ups, hence the rise
  with clients. Lamina's Python runtime adds ~20 us of its own CPU per invocation plus its
  socket calls, which is why its rows stay under the native runtime's.
- **HTTP gateway requests/s**: a request through the gateway costs what a direct invocation costs
  (the worker call, the sandbox's Runtime API exchange, four processes on two cores, here with
  `wrk` among them) plus one HTTP/1.1 exchange; its rate follows the no-op invocations' above.
- **Pool/zygote end to end vs 5 ms**: at the sandbox layer a zygote fork into a prepared sandbox
  answers in ~2.5 ms; end to end adds the SDK -> controller -> worker round trip (the warm
  overhead), the worker binding the prepared sandbox to the function (cgroup limits, code and
  layer mounts: ~1 ms) and the first Runtime API exchange. Across runs on this shared machine it
  has measured 4.5-6.4 ms p50 (`--only zygote` and full runs), the sandbox layer 2.5-2.9 ms.
- **Python cold start, exec'd interpreter, end to end**: `python3.11` itself starts in ~12 ms
  (bare, same run); the sandbox layer adds little. End to end varies with what ran before
  (20 ms alone, `--only api`; more after the sandbox layer's thousands of sandboxes).
- **Idle memory, zygote-forked (<= 1 MB)**: Python 3.11 writes a reference count into every
  object it touches, so the runtime (pid 2) copies every page of shared objects it uses: ~1 MB
  of object memory, ~0.7 MB of malloc heap (the sandbox's setup and compiling the function's
  module, whose bytecode cannot be cached in the read-only `/var/task`) and ~0.5 MB of the
  interpreter's static data. Immortal objects (Python 3.12) would remove most of the first; the
  outer process's share is mostly pages the zygote wrote after the fork. `gc.freeze()` in the
  zygote keeps the collector from touching the rest.
- **100 concurrent cold starts**: the function has 128 MB, hence 0.07 vCPU (1769 MB = 1): the
  ~25-40 ms of CPU an exec'd Python interpreter needs to start spread over several 100 ms CFS
  periods, ~0.5 s per cold start. A worker runs at most 8 cold starts at a time
  (`--cold-starts-per-worker`), so one worker starts the hundred in ~12 waves and three workers
  (24 at a time, on the same 2 cores) in ~4: the spread is what the three-worker row gains.
"#;
