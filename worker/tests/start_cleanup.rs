//! A sandbox start that fails half-way leaves nothing behind, as root with real sandboxes: its
//! memory is no longer counted, its network attachment (a NAT'd default egress address and
//! interface) is released, its work directory and cgroup are gone, and a prepared sandbox it took
//! but did not touch is back in the pool. The whole binary runs in a network namespace of its own
//! (made in `main`), so the NAT bridge and rules it creates never touch the host's.
//! Own `main` (harness = false) because a sandbox's init is a re-exec of this executable with
//! `__sandbox-init`.
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lamina_proto::domain::{FunctionConfig, FunctionSpec, Runtime};
use lamina_proto::v1::{WorkerInvokeRequest, WorkerInvokeResponse};
use lamina_worker::code_cache::CodeCache;
use lamina_worker::manager::{Manager, ManagerConfig, ManagerError};
use lamina_worker::network::{egress::NatConfig, NetworkAgent};

use harness::Test;

struct Pool {
    manager: Manager,
    worker_id: String,
    code_root: PathBuf,
    sandboxes_dir: PathBuf,
    cgroup_parent: String,
    _dir: tempfile::TempDir,
}

impl Pool {
    fn new(name: &str, prewarm: usize) -> Pool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let runtime_dir = dir.path().join("runtime");
        lamina_worker::runtimes::install(&runtime_dir).unwrap();
        let code_root = dir.path().join("code");
        let creds = lamina_proto::auth::Credentials {
            access_key_id: lamina_proto::auth::CLUSTER_KEY_ID.to_string(),
            secret_access_key: "unused: nothing is fetched".to_string(),
        };
        // Nothing listens there (and this network namespace has only loopback): a function whose
        // code is not in the cache fails its fetch at once.
        let client = lamina_worker::service::cluster_client("http://127.0.0.1:9", creds).unwrap();
        let budget = lamina_worker::disk_cache::DiskBudget::new(1 << 30);
        let code = CodeCache::new(code_root.clone(), client, budget).unwrap();
        let worker_id = format!("clean-{name}-{}", std::process::id());
        let cgroup_parent = format!("lamina-test/{worker_id}");
        let sandboxes_dir = dir.path().join("sandboxes");
        let cfg = ManagerConfig {
            worker_id: worker_id.clone(),
            cgroup_parent: cgroup_parent.clone(),
            sandboxes_dir: sandboxes_dir.clone(),
            runtime_dir,
            memory_mb: 1024,
            keep_alive: Duration::from_secs(60),
            freeze_after: Duration::ZERO,
            uid_base: 310_000,
            uid_count: 100,
            uids_file: dir.path().join("uids.json"),
            pids_max: 64,
            prewarm,
            python_zygote: false,
            spawner: false,
        };
        Pool {
            manager: Manager::new(cfg, code),
            worker_id,
            code_root,
            sandboxes_dir,
            cgroup_parent,
            _dir: dir,
        }
    }

    /// A `provided` function whose `bootstrap` is executable but no program: the kernel refuses
    /// the exec, so its start fails at bind, after the memory and the network were taken.
    fn unrunnable(&self, name: &str) -> FunctionConfig {
        let sha = format!("{:0>64}", "ba5e");
        let dir = self.code_root.join(&sha);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bootstrap = dir.join("bootstrap");
        std::fs::write(&bootstrap, b"not a program\n").unwrap();
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        config(name, Runtime::ProvidedAl2023, sha)
    }

    async fn invoke(&self, config: &FunctionConfig) -> Result<WorkerInvokeResponse, ManagerError> {
        let req = WorkerInvokeRequest {
            request_id: format!("req-{}", std::process::id()),
            function: Some(config.into()),
            payload: b"{}".to_vec(),
            deadline_ms: 0,
            client_context: String::new(),
            trace_id: String::new(),
            invoked_function_arn: String::new(),
            credentials: None,
        };
        tokio::time::timeout(Duration::from_secs(60), self.manager.invoke(req))
            .await
            .expect("invocation hung")
    }

    /// Nothing of a started sandbox is left: no memory counted, no sandbox listed, no work
    /// directory, no sandbox cgroup (emptied ones kept for reuse are named `free-N`).
    fn assert_empty(&self, after: &str) {
        let status = self.manager.status();
        assert_eq!(
            status.memory_free_mb, status.memory_total_mb,
            "{after}: memory still counted: {status:#?}"
        );
        assert!(
            status.sandboxes.is_empty(),
            "{after}: {:#?}",
            status.sandboxes
        );
        let left = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with("sb-"))
                        .collect()
                })
                .unwrap_or_default()
        };
        let prepared: Vec<String> = left(&self.sandboxes_dir);
        assert!(
            prepared.len() <= self.manager.prepared_count(),
            "{after}: work directories left: {prepared:?}"
        );
        for controller in ["memory", "pids", "freezer"] {
            let dir = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(&self.cgroup_parent);
            let cgroups = left(&dir);
            assert!(
                cgroups.len() <= self.manager.prepared_count(),
                "{after}: sandbox cgroups left in {}: {cgroups:?}",
                dir.display()
            );
        }
    }

    async fn close(self) {
        self.manager.shutdown().await;
        lamina_worker::sandbox::remove_cgroup_parent(&self.cgroup_parent);
    }
}

fn config(name: &str, runtime: Runtime, sha: String) -> FunctionConfig {
    FunctionConfig {
        spec: FunctionSpec {
            name: name.to_string(),
            runtime,
            handler: "app.handler".to_string(),
            memory_mb: 256,
            timeout_s: 10,
            ephemeral_storage_mb: 512,
            environment: Default::default(),
            description: String::new(),
            layers: Vec::new(),
            package_type: Default::default(),
            image_config: Default::default(),
            vpc_config: None,
            role: String::new(),
            logging: Default::default(),
        },
        code_sha256: sha,
        code_size: 1,
        revision_id: "r1".to_string(),
        version: "$LATEST".to_string(),
        last_modified_ms: 1,
        layers: Vec::new(),
        image: None,
    }
}

/// Interfaces of this test's network namespace whose name starts with `prefix`.
fn links(prefix: &str) -> Vec<String> {
    lamina_worker::network::links::links_with_prefix(prefix).expect("list links")
}

/// A start that fails at bind, after its memory was counted and its NAT address and interface
/// were taken: everything is given back before the invocation's answer. The NAT range has room
/// for one sandbox only, so a second start finds the address free again only if the first gave
/// it back (else it fails with "no free address left").
async fn a_failed_bind_gives_back_memory_network_and_sandbox() {
    let pool = Pool::new("bind", 0);
    let agent = NetworkAgent::new(&pool.worker_id, None);
    agent.set_default_egress(Some(NatConfig {
        // /30: the network, the gateway (the bridge) and the broadcast address leave one
        // address for sandboxes.
        cidr: "10.254.77.0/30".parse().unwrap(),
        blocked: Vec::new(),
    }));
    assert!(pool.manager.set_network(agent.clone()));
    let function = pool.unrunnable("unrunnable");
    let tag = lamina_worker::network::links::worker_tag(&pool.worker_id);
    for round in 1..=3 {
        let resp = pool
            .invoke(&function)
            .await
            .unwrap_or_else(|e| panic!("round {round}: not the function's error: {e}"));
        assert_eq!(resp.function_error, "Unhandled", "round {round}");
        let payload = String::from_utf8_lossy(&resp.payload);
        assert!(
            payload.contains("Runtime.InvalidEntrypoint"),
            "round {round}: {payload}"
        );
        pool.assert_empty(&format!("round {round}"));
        // The NAT bridge stays (it serves the next sandbox); the sandbox's interface goes with its
        // network namespace, which the kernel tears down in the background.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ports: Vec<String> = links(&format!("ln{tag}"))
                .into_iter()
                .filter(|l| *l != format!("ln{tag}"))
                .collect();
            if ports.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: interfaces left: {ports:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    pool.close().await;
    agent.shutdown().await;
}

/// A start that fails before its prepared sandbox was touched (the code cannot be fetched) puts
/// that sandbox back in the pool of prepared ones and counts no memory any more.
async fn a_failed_fetch_puts_the_prepared_sandbox_back() {
    let pool = Pool::new("fetch", 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.manager.prepared_count() < 1 {
        assert!(Instant::now() < deadline, "no sandbox was prepared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing = config("uncached", Runtime::Python311, format!("{:0>64}", "c0de"));
    let err = pool
        .invoke(&missing)
        .await
        .expect_err("the fetch must fail");
    assert!(
        matches!(err, ManagerError::Code(_)),
        "not the fetch's error: {err}"
    );
    assert_eq!(
        pool.manager.prepared_count(),
        1,
        "the prepared sandbox is lost"
    );
    pool.assert_empty("a failed fetch");
    pool.close().await;
}

/// This process (single-threaded still) moves to a network namespace of its own with loopback up.
fn private_network() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the network");
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up: {up}");
}

fn main() {
    harness::enter("start cleanup");
    private_network();
    let tests: Vec<Test> = vec![
        (
            "a_failed_bind_gives_back_memory_network_and_sandbox",
            || Box::pin(a_failed_bind_gives_back_memory_network_and_sandbox()),
        ),
        ("a_failed_fetch_puts_the_prepared_sandbox_back", || {
            Box::pin(a_failed_fetch_puts_the_prepared_sandbox_back())
        }),
    ];
    harness::run(tests, &["lamina-test"]);
}
