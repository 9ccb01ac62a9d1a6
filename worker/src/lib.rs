//! lamina-worker: the node agent. See `docs/ARCHITECTURE.md` for the map of these modules.
pub mod cgroup;
pub mod code_cache;
pub mod config;
pub mod disk_cache;
pub mod health;
pub mod image_cache;
pub mod manager;
pub mod network;
pub mod role_endpoints;
pub mod runtime_api;
pub mod runtimes;
pub mod sandbox;
pub mod service;
