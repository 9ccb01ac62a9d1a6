//! Every column family of the controller's database, with its options, in one place: the store's
//! (functions, blobs, logs, versions, settings, layers, network, gateway) and the async queue's.
//! What each holds and why: `store/README.md`.
use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, Options};

pub const FUNCTIONS: &str = "functions";
pub const BLOBS: &str = "blobs";
pub const LOGS: &str = "logs";
pub const SETTINGS: &str = "function_settings";
pub const VERSIONS: &str = "versions";
pub const LAYERS: &str = "layers";
pub const NETWORK: &str = "network";
pub const GATEWAY: &str = "gateway";
/// Execution roles (`roles.rs`).
pub const ROLES: &str = "roles";
/// Secrets Manager secrets and their sealed versions (`secrets.rs`).
pub const SECRETS: &str = "secrets";
/// SSM parameters and their versions (`parameters.rs`).
pub const PARAMETERS: &str = "parameters";

pub const INVOCATIONS: &str = "invocations";
pub const QUEUE_PAYLOADS: &str = "queue_payloads";
pub const QUEUE_DUE: &str = "queue_due";
pub const QUEUE_LEASES: &str = "queue_leases";
pub const INVOCATIONS_BY_FUNCTION: &str = "invocations_by_function";
pub const INVOCATIONS_DONE: &str = "invocations_done";
pub const IDEMPOTENCY: &str = "idempotency";
pub const IDEMPOTENCY_BY_TIME: &str = "idempotency_by_time";
pub const EVENT_INVOKE_CONFIGS: &str = "event_invoke_configs";
pub const DEAD_LETTERS: &str = "dead_letters";

/// How a column family is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tuning {
    Plain,
    /// Large values (code zips): values of 4 KB and more go to blob files, out of the LSM tree's
    /// compactions.
    Blobs,
    /// FIFO-like (keys written once and deleted soon): files with many deletions are compacted
    /// early so that scans do not wade through tombstones.
    Fifo,
    /// FIFO-like with large values (event payloads).
    FifoBlobs,
}

const FAMILIES: [(&str, Tuning); 21] = [
    (FUNCTIONS, Tuning::Plain),
    (BLOBS, Tuning::Blobs),
    (LOGS, Tuning::Plain),
    (SETTINGS, Tuning::Plain),
    (VERSIONS, Tuning::Plain),
    (LAYERS, Tuning::Plain),
    (NETWORK, Tuning::Plain),
    (GATEWAY, Tuning::Plain),
    (ROLES, Tuning::Plain),
    (SECRETS, Tuning::Plain),
    (PARAMETERS, Tuning::Plain),
    (INVOCATIONS, Tuning::Plain),
    (QUEUE_PAYLOADS, Tuning::FifoBlobs),
    (QUEUE_DUE, Tuning::Fifo),
    (QUEUE_LEASES, Tuning::Fifo),
    (INVOCATIONS_BY_FUNCTION, Tuning::Plain),
    (INVOCATIONS_DONE, Tuning::Plain),
    (IDEMPOTENCY, Tuning::Plain),
    (IDEMPOTENCY_BY_TIME, Tuning::Plain),
    (EVENT_INVOKE_CONFIGS, Tuning::Plain),
    (DEAD_LETTERS, Tuning::Plain),
];

/// The names of every column family, in declaration order.
pub fn names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|(name, _)| *name)
}

/// The database's own options (no compression: zips and payloads are mostly compressed already).
pub(super) fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(DBCompressionType::None);
    opts
}

pub(super) fn descriptors() -> Vec<ColumnFamilyDescriptor> {
    FAMILIES
        .iter()
        .map(|(name, tuning)| ColumnFamilyDescriptor::new(*name, family_options(*tuning)))
        .collect()
}

fn family_options(tuning: Tuning) -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::None);
    if matches!(tuning, Tuning::Fifo | Tuning::FifoBlobs) {
        o.add_compact_on_deletion_collector_factory(1024, 256, 0.5);
    }
    if matches!(tuning, Tuning::Blobs | Tuning::FifoBlobs) {
        o.set_enable_blob_files(true);
        o.set_min_blob_size(4096);
    }
    o
}
