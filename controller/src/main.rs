//! `lamina-controller`: serves Lamina's control plane over gRPC.
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lamina_controller::concurrency::ConcurrencyConfig;
use lamina_controller::queue::QueueConfig;
use lamina_controller::{Controller, ControllerConfig, DEFAULT_LISTEN};
use tokio_util::sync::CancellationToken;

/// How long a stop waits for requests in flight before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "lamina-controller",
    version,
    about = "Lamina's control plane (gRPC)"
)]
struct Args {
    /// HOST:PORT to serve on (port 0 = any free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
    /// HOST:PORT of the Lambda-compatible REST API (boto3, the AWS CLI; port 0 = any free port).
    #[arg(long, default_value = lamina_controller::rest::DEFAULT_REST_LISTEN)]
    rest_listen: String,
    /// HOST:PORT of the public HTTP gateway: function URLs and HTTP APIs (port 0 = any free port).
    #[arg(long, default_value = lamina_controller::gateway::DEFAULT_HTTP_LISTEN)]
    http_listen: String,
    /// The domain of the gateway's host names: `<id>.lambda-url.us-east-1.DOMAIN`,
    /// `<id>.execute-api.us-east-1.DOMAIN`.
    #[arg(long, default_value = "localhost")]
    http_domain: String,
    /// The scheme clients reach the gateway with (default: `https` with TLS, else `http`; `https`
    /// behind a TLS reverse proxy).
    #[arg(long, value_parser = ["http", "https"])]
    http_public_scheme: Option<String>,
    /// The port clients reach the gateway on, when a reverse proxy's differs from --http-listen's.
    #[arg(long)]
    http_public_port: Option<u16>,
    /// Connections the gateway serves at once; more are closed as they arrive.
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    http_max_connections: usize,
    /// Request-body bytes the gateway holds at once, all requests together (at least one 6 MB
    /// body); more waits, then is refused with 503.
    #[arg(long, default_value_t = 256 << 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range((6 << 20)..))]
    http_body_budget_bytes: usize,
    /// Directory of the RocksDB store (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// A worker without a heartbeat for this long gets no new work.
    #[arg(long, default_value_t = 5000)]
    worker_timeout_ms: u64,
    /// Heartbeat interval told to workers.
    #[arg(long, default_value_t = 1000)]
    heartbeat_interval_ms: u64,
    /// Log events kept per function.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    log_retention: u64,
    /// Largest asynchronous (EVENT) payload in bytes.
    #[arg(long, default_value_t = lamina_proto::validate::MAX_ASYNC_PAYLOAD_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=(16 << 20)))]
    async_max_payload_bytes: usize,
    /// Asynchronous deliveries running at once.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    async_concurrency: usize,
    /// Events taken off the async queue per second at most (bounds the drain of a backlog).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    async_dispatch_rate: u32,
    /// Multiplies async retry delays, backoff and maximum event ages (tests: 0.01).
    #[arg(long, default_value_t = 1.0)]
    async_time_scale: f64,
    /// A repeated idempotency key within this many seconds returns the first request id.
    #[arg(long, default_value_t = 3600)]
    idempotency_window_s: u64,
    /// Finished async invocation records kept at most.
    #[arg(long, default_value_t = 100_000)]
    invocation_retention: u64,
    /// Finished async invocation records kept at most this many seconds.
    #[arg(long, default_value_t = 7 * 86_400)]
    invocation_retention_s: u64,
    /// Invocations in flight cluster-wide at most (sync and async); over it: throttled.
    #[arg(long, default_value_t = lamina_controller::concurrency::DEFAULT_LIMIT, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency_limit: u32,
    /// Share of --concurrency-limit that reserved concurrency may not take (clamped below the limit).
    #[arg(long, default_value_t = lamina_controller::concurrency::DEFAULT_UNRESERVED_MIN)]
    unreserved_concurrency_min: u32,
    /// Cold starts (new sandboxes) in flight per worker at most; more go to other workers or wait.
    #[arg(long, default_value_t = lamina_controller::registry::DEFAULT_COLD_STARTS_PER_WORKER, value_parser = clap::value_parser!(u32).range(1..))]
    cold_starts_per_worker: u32,
    /// How long an invocation waits for a cold-start slot when every worker is at its bound.
    #[arg(long, default_value_t = lamina_controller::concurrency::DEFAULT_PLACEMENT_WAIT.as_millis() as u64)]
    placement_wait_ms: u64,
    /// Network namespaces (`/run/netns/NAME`) an admin may attach to a VPC with `attach-netns`:
    /// names or patterns with `*`, comma-separated. Default: none.
    #[arg(long, value_delimiter = ',')]
    attachable_netns: Vec<String>,
    /// Request-body bytes not yet authenticated held at once, REST and gRPC together (at least
    /// the largest upload, 72 MB): more waits, then is refused.
    #[arg(long, default_value_t = lamina_proto::guard::DEFAULT_UNVERIFIED_BUDGET_BYTES)]
    unverified_body_budget_bytes: usize,
    /// The largest container-image upload (package type Image) in bytes.
    #[arg(long, default_value_t = lamina_controller::image::DEFAULT_MAX_IMAGE_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    max_image_bytes: u64,
    /// PEM certificate chain served on every listener (gRPC, REST, HTTP gateway) and presented
    /// to workers (mTLS); with --tls-key and --tls-ca. `fnctl up` generates them.
    #[arg(long, env = "LAMINA_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "LAMINA_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM certificate of the cluster CA: workers must present a certificate it signed to use the
    /// Cluster service, and the workers' own certificates are verified against it.
    #[arg(long, env = "LAMINA_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Serve plain HTTP and gRPC without TLS: refused unless every listen address is a loopback
    /// address.
    #[arg(long)]
    plaintext: bool,
    /// How long the session credentials of execution roles (in sandboxes of functions with a
    /// role) are valid; a new sandbox gets fresh ones.
    #[arg(long, default_value_t = lamina_controller::auth::sessions::DEFAULT_SESSION_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(1..=43200))]
    session_ttl_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Everything the controller writes (RocksDB: environment variables, code, logs; keys) is
    // for its own user only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    raise_nofile_limit();
    anyhow::ensure!(
        args.heartbeat_interval_ms > 0 && args.heartbeat_interval_ms < args.worker_timeout_ms,
        "--heartbeat-interval-ms must be above 0 and below --worker-timeout-ms ({}), got {}",
        args.worker_timeout_ms,
        args.heartbeat_interval_ms
    );
    anyhow::ensure!(
        args.async_time_scale > 0.0 && args.async_time_scale <= 1.0,
        "--async-time-scale must be above 0 and at most 1, got {}",
        args.async_time_scale
    );
    // Before anything is created: no TLS material and no --plaintext (or --plaintext on a
    // non-loopback address) stops here.
    let tls = resolve_tls(&args)?;
    let config = ControllerConfig {
        data_dir: args.data_dir,
        worker_timeout: Duration::from_millis(args.worker_timeout_ms),
        heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
        log_retention: args.log_retention,
        queue: QueueConfig {
            max_payload_bytes: args.async_max_payload_bytes,
            concurrency: args.async_concurrency,
            dispatch_rate: args.async_dispatch_rate,
            time_scale: args.async_time_scale,
            idempotency_window: Duration::from_secs(args.idempotency_window_s),
            retention_records: args.invocation_retention,
            retention_age: Duration::from_secs(args.invocation_retention_s),
            ..QueueConfig::default()
        },
        auth: true,
        concurrency: ConcurrencyConfig {
            limit: args.concurrency_limit,
            unreserved_min: args.unreserved_concurrency_min,
            cold_starts_per_worker: args.cold_starts_per_worker,
            placement_wait: Duration::from_millis(args.placement_wait_ms),
        },
        max_image_bytes: args.max_image_bytes,
        unverified_body_budget_bytes: args.unverified_body_budget_bytes,
        attachable_netns: args.attachable_netns,
        session_ttl: Duration::from_secs(args.session_ttl_secs),
    };
    let controller = Controller::open(config.clone())?;
    if let Some(path) = &controller.bootstrap().admin_credentials {
        // The secret itself is never logged: only where it is.
        eprintln!(
            "lamina-controller: created the first admin access key; its id and secret are in {} \
             (mode 0600, shown nowhere else): use it with `fnctl --credentials {}`",
            path.display(),
            path.display()
        );
    }
    if let Some(keys) = controller.keys() {
        tracing::info!(cluster_token_file = %keys.cluster_token_path().display(), "workers authenticate with the cluster credential: pass --cluster-token-file");
    }
    let rest_listener = tokio::net::TcpListener::bind(&args.rest_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is the port free? (--rest-listen HOST:PORT)",
                args.rest_listen
            )
        })?;
    let rest_addr = rest_listener
        .local_addr()
        .with_context(|| format!("cannot read the bound address of {}", args.rest_listen))?;
    let http_listener = tokio::net::TcpListener::bind(&args.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is the port free? (--http-listen HOST:PORT)",
                args.http_listen
            )
        })?;
    let http_addr = http_listener
        .local_addr()
        .with_context(|| format!("cannot read the bound address of {}", args.http_listen))?;
    let http_config = lamina_controller::gateway::GatewayConfig {
        domain: args.http_domain.clone(),
        public_scheme: args
            .http_public_scheme
            .clone()
            .unwrap_or_else(|| if tls.is_some() { "https" } else { "http" }.to_string()),
        public_port: args.http_public_port,
        max_connections: args.http_max_connections,
        body_budget_bytes: args.http_body_budget_bytes,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is the port free? (--listen HOST:PORT)",
                args.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("cannot read the bound address of {}", args.listen))?;

    let shutdown = CancellationToken::new();
    let controller = controller.with_http(http_listener, http_config);
    let controller = match tls {
        Some(tls) => controller.with_tls(tls)?,
        None => controller,
    };
    let server =
        tokio::spawn(controller.serve_with_rest(listener, Some(rest_listener), shutdown.clone()));
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "lamina-controller http listening on {http_addr}")
            .context("cannot write to stdout")?;
        writeln!(out, "lamina-controller rest listening on {rest_addr}")
            .context("cannot write to stdout")?;
        writeln!(out, "lamina-controller listening on {addr}").context("cannot write to stdout")?;
        out.flush().context("cannot flush stdout")?;
    }

    let mut server = server;
    tokio::select! {
        result = &mut server => return result.context("server task failed")?.map_err(Into::into),
        signal = stop_signal() => {
            let name = signal?;
            tracing::info!(signal = name, "stopping: answering requests in flight");
        }
    }
    shutdown.cancel();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(result) => result.context("server task failed")??,
        Err(_) => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still in flight after the grace period: exiting")
        }
    }
    Ok(())
}

/// The TLS material of `--tls-cert/--tls-key/--tls-ca`, or `None` for `--plaintext` (only when
/// every listen address resolves to loopback addresses).
fn resolve_tls(args: &Args) -> anyhow::Result<Option<lamina_proto::tls::TlsMaterial>> {
    use std::net::ToSocketAddrs;
    let mut listens = Vec::new();
    for (flag, addr) in [
        ("--listen", &args.listen),
        ("--rest-listen", &args.rest_listen),
        ("--http-listen", &args.http_listen),
    ] {
        let resolved = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {flag} {addr}: use HOST:PORT"))?;
        listens.extend(resolved.map(|a| (flag, a)));
    }
    let flags = lamina_proto::tls::TlsFlags {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        ca: args.tls_ca.clone(),
        plaintext: args.plaintext,
    };
    Ok(flags.resolve(&listens)?)
}

async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the systemd unit sets a high `LimitNOFILE`):
/// every worker connection, REST and gRPC client and RocksDB file takes a descriptor, and the
/// usual soft default of 1024 is reached by a busy cluster. A failure is logged: the controller
/// still runs within the lower limit.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}
