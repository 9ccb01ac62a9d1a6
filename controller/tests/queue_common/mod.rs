//! A real queue (RocksDB in a temporary directory, the real dispatcher) with a scripted invoker in
//! place of the workers: the queue is what is under test.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lamina_controller::queue::{Dispatcher, Invoker, Outcome, QueueConfig, QueueStore};
use lamina_controller::store::RocksStore;
use tokio_util::sync::CancellationToken;

type Script = dyn Fn(&str, u32) -> Outcome + Send + Sync;

/// Runs every delivery through `script(function, nth run of this request id)`; counts runs.
pub struct ScriptedInvoker {
    pub runs: Mutex<HashMap<String, u32>>,
    pub ready: AtomicBool,
    pub functions: Mutex<Vec<String>>,
    script: Box<Script>,
}

impl ScriptedInvoker {
    pub fn new(script: impl Fn(&str, u32) -> Outcome + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(ScriptedInvoker {
            runs: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(true),
            functions: Mutex::new(vec!["f".into(), "dest".into()]),
            script: Box::new(script),
        })
    }

    pub fn runs_of(&self, rid: &str) -> u32 {
        self.runs.lock().unwrap().get(rid).copied().unwrap_or(0)
    }

    pub fn total_runs(&self) -> u32 {
        self.runs.lock().unwrap().values().sum()
    }
}

#[tonic::async_trait]
impl Invoker for ScriptedInvoker {
    async fn function_timeout(
        &self,
        name: &str,
        _qualifier: &str,
    ) -> Result<Option<Duration>, String> {
        Ok(self
            .functions
            .lock()
            .unwrap()
            .iter()
            .any(|f| f == name)
            .then_some(Duration::from_secs(3)))
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    async fn invoke(
        &self,
        function_name: &str,
        _qualifier: &str,
        request_id: &str,
        _payload: Vec<u8>,
    ) -> Outcome {
        let n = {
            let mut runs = self.runs.lock().unwrap();
            let n = runs.entry(request_id.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        (self.script)(function_name, n)
    }
}

pub fn config() -> QueueConfig {
    QueueConfig {
        time_scale: 0.001,
        concurrency: 16,
        dispatch_rate: 100_000,
        ..QueueConfig::default()
    }
}

/// Opens the queue in `dir`, retrying while the previous instance's committer still holds the lock.
pub fn open(dir: &Path, config: QueueConfig) -> Arc<QueueStore> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match RocksStore::open(dir, 100) {
            Ok(store) => {
                return Arc::new(QueueStore::open(store.db(), config).expect("open queue"))
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

pub struct Running {
    pub queue: Arc<QueueStore>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn start(queue: Arc<QueueStore>, invoker: Arc<ScriptedInvoker>) -> Running {
    let stop = CancellationToken::new();
    let task = tokio::spawn(Dispatcher::new(Arc::clone(&queue), invoker).run(stop.clone()));
    Running { queue, stop, task }
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Polls until `f` holds or 10 s pass.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
