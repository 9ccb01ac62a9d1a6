//! `lamina-worker`: the node agent. `lamina-worker __sandbox-init` is the sandbox's init process.
use std::io::Write;
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lamina_worker::code_cache::CodeCache;
use lamina_worker::config::{Cli, WorkerConfig};
use lamina_worker::manager::{Manager, ManagerConfig};
use lamina_worker::service::{self, Registration};
use lamina_worker::{runtimes, sandbox};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// How long a stop waits for the gRPC server's connections to close.
const SERVER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() {
    // The sandbox init runs in a fresh single-threaded process: before clap, tokio or anything else.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__sandbox-init")
    {
        sandbox::init::main();
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = run(cli) {
        eprintln!("lamina-worker: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("lamina-worker must run as root: it creates namespaces and cgroups");
    }
    match lamina_worker::health::raise_nofile_limit() {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "running with the lower open-file limit"),
    }
    // What the worker writes is its own; what sandboxes must read (unpacked code, images, runtime
    // bootstraps) is made world-readable explicitly, and sandbox inits reset the umask for the
    // function.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    make_private(&cli.state_dir)?;
    let mut cfg = WorkerConfig::resolve(cli)?;
    // Held until the process exits: no other worker on this host hands out these uids.
    let _uid_range = cfg.take_uid_range(std::path::Path::new(lamina_worker::manager::LOCK_DIR))?;
    tracing::info!(
        base = cfg.uid_base,
        end = u64::from(cfg.uid_base) + u64::from(cfg.uid_count),
        "host uid range locked for this worker"
    );
    lamina_worker::cgroup::set_reuse_capacity(cfg.cgroup_reuse);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(serve(cfg))
}

/// Creates the state directory mode 0700, or takes the group and other bits off an existing one
/// (older versions made it 0755). Sandboxes do not need to traverse it: their code, image and
/// runtime are bind-mounted by the (root) init before it drops privileges.
fn make_private(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (mode 0700)", dir.display()))
}

fn prepare_state(cfg: &WorkerConfig) -> Result<()> {
    sandbox::cleanup_stale(&cfg.cgroup_parent());
    let sandboxes = cfg.sandboxes_dir();
    match std::fs::remove_dir_all(&sandboxes) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot wipe {}", sandboxes.display())),
    }
    std::fs::create_dir_all(&sandboxes)
        .with_context(|| format!("cannot create {}", sandboxes.display()))?;
    runtimes::install(&cfg.runtime_dir()).context("cannot install the runtime bootstraps")?;
    Ok(())
}

/// The address the controller dials: `--advertise`, else the bound address (loopback if unspecified).
fn advertise(cfg: &WorkerConfig, bound: SocketAddr) -> String {
    if let Some(a) = &cfg.advertise {
        return a.clone();
    }
    if bound.ip().is_unspecified() {
        tracing::warn!(%bound, "listening on all addresses without --advertise: advertising 127.0.0.1");
        return SocketAddr::from(([127, 0, 0, 1], bound.port())).to_string();
    }
    bound.to_string()
}

async fn serve(cfg: WorkerConfig) -> Result<()> {
    let setup = cfg.clone();
    tokio::task::spawn_blocking(move || prepare_state(&setup))
        .await
        .context("state preparation task failed")??;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    let client = service::cluster_client_with_tls(
        &cfg.controller,
        cfg.cluster_credentials.clone(),
        cfg.tls.as_ref().map(|t| t.client_config()).transpose()?,
    )?;
    let budget = lamina_worker::disk_cache::DiskBudget::new(cfg.cache_budget_bytes);
    let code = CodeCache::new(cfg.code_dir(), client.clone(), budget)?;
    let manager = Manager::new(ManagerConfig::from_worker(&cfg), code);
    // The role endpoints of sandboxes forward to the controller's REST API (TLS: with the
    // cluster's client configuration). Without it they are not served (logged, not fatal).
    if let Some(rest) = &cfg.controller_rest {
        let tls = cfg.tls.as_ref().map(|t| t.client_config()).transpose()?;
        match lamina_worker::role_endpoints::upstream_for(rest, tls) {
            Ok(upstream) => {
                manager.set_role_upstream(upstream);
            }
            Err(e) => tracing::error!(
                error = %e,
                "--controller-rest: the role endpoints of sandboxes are not served"
            ),
        }
    }
    let vpc_agent = lamina_worker::network::NetworkAgent::new(&cfg.worker_id, None);
    anyhow::ensure!(
        vpc_agent.set_controller(client.clone()),
        "the VPC agent's controller client was set twice"
    );
    if cfg.default_egress == lamina_worker::network::egress::EgressMode::Nat {
        // The controller's address is never reachable from a sandbox.
        let controller_ip = cfg
            .controller
            .rsplit("://")
            .next()
            .and_then(|hp| hp.rsplit_once(':'))
            .and_then(|(h, _)| h.parse::<std::net::Ipv4Addr>().ok());
        vpc_agent.set_default_egress(Some(lamina_worker::network::egress::NatConfig {
            cidr: cfg.nat_cidr,
            blocked: controller_ip
                .map(|a| lamina_proto::network::Ipv4Cidr {
                    addr: a,
                    prefix: 32,
                })
                .into_iter()
                .collect(),
        }));
    }

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pick another --listen address",
                cfg.listen
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let server_tls = cfg
        .tls
        .as_ref()
        .map(|t| {
            t.server_config(
                lamina_proto::tls::ClientCerts::Required,
                &[lamina_proto::tls::ALPN_H2],
            )
        })
        .transpose()?;
    let server = tokio::spawn(service::serve_with_tls(
        listener,
        manager.clone(),
        cfg.cluster_credentials.clone(),
        server_tls,
        shutdown.clone(),
    ));

    let reg = Registration {
        worker_id: cfg.worker_id.clone(),
        address: advertise(&cfg, bound),
        memory_total_mb: cfg.memory_mb,
    };
    vpc_agent.set_local(
        reg.address
            .rsplit_once(':')
            .and_then(|(h, _)| h.parse().ok()),
    );
    anyhow::ensure!(
        manager.set_network(std::sync::Arc::clone(&vpc_agent)),
        "the worker's VPC agent was set twice"
    );
    let heartbeat = match service::register(&client, &reg, &shutdown).await {
        Some(interval) => {
            // A fresh worker process has no sandboxes: the addresses a previous run pooled go back.
            vpc_agent.release_all_leases().await;
            let mut out = std::io::stdout().lock();
            writeln!(out, "lamina-worker {} listening on {bound}", cfg.worker_id)
                .and_then(|()| out.flush())
                .context("cannot write to stdout")?;
            drop(out);
            Some(tokio::spawn(service::heartbeat_loop(
                client,
                manager.clone(),
                reg,
                interval,
                shutdown.clone(),
            )))
        }
        None => None,
    };

    shutdown.cancelled().await;
    tracing::info!("shutting down: destroying every sandbox");
    manager.shutdown().await;
    vpc_agent.shutdown().await;
    sandbox::remove_cgroup_parent(&cfg.cgroup_parent());
    if let Some(h) = heartbeat {
        h.await.ok();
    }
    // A graceful stop waits for the controller to close its connection, which a controller cut off
    // by the network never does: bounded.
    match tokio::time::timeout(SERVER_STOP_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "worker grpc server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "worker grpc server task failed"),
        Err(_) => tracing::warn!(
            grace = ?SERVER_STOP_GRACE,
            "connections still open after the grace period (controller unreachable?): exiting"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
fn spawn_signal_handler(shutdown: CancellationToken) -> Result<()> {
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
        shutdown.cancel();
    });
    Ok(())
}
