//! lamina-worker: the node agent. See `docs/ARCHITECTURE.md` for the map of these modules.
pub mod cgroup;
pub mod code_cache;
pub mod config;
pub mod manager;
pub mod runtime_api;
pub mod runtimes;
pub mod sandbox;
pub mod service;
