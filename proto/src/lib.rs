//! Lamina's API: the generated gRPC code (`v1`) and the domain types (`domain`) that the controller and
//! worker work with. Proto types stay at the edge: convert with `TryFrom`/`From` in `convert`.

/// Generated from `proto/lamina/v1/{lamina,network,cluster}.proto`.
#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
pub mod v1 {
    tonic::include_proto!("lamina.v1");
}

pub mod archive;
pub mod auth;
pub mod certs;
pub mod convert;
pub mod domain;
pub mod gateway;
pub mod guard;
pub mod net;
pub mod network;
pub mod session;
pub mod time;
pub mod tls;
pub mod validate;

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lamina_descriptor.bin"));

/// Largest gRPC message the servers and clients accept: a 6 MB payload plus headroom.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
