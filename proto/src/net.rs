//! Transport helpers shared by every gRPC server of Lamina.
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

/// The accepted connections of `listener` with TCP_NODELAY set: small gRPC frames must not wait for
/// a delayed ACK (Nagle would add ~40 ms to every request/response exchange).
pub fn nodelay_incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            if let Err(e) = stream.set_nodelay(true) {
                // Only a latency cost; the connection itself is fine.
                eprintln!("lamina: cannot set TCP_NODELAY: {e}");
            }
        }
        conn
    })
}

/// HTTP/2 streams one connection may have open at once on a Lamina gRPC server.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Streams a worker's server takes per connection (the controller multiplexes every invocation
/// placed on that worker over one connection).
pub const WORKER_MAX_CONCURRENT_STREAMS: u32 = 2048;
/// The largest header block a client may send (HTTP/2's own default is 16 MB).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// The largest HTTP/2 frame a client may send (the protocol's minimum, and its default).
pub const MAX_FRAME_BYTES: u32 = 16 * 1024;

/// A tonic server builder with Lamina's bounds on what one connection can make it hold: streams
/// at once, header list and frame sizes, reset-stream floods, and keepalives that find dead peers.
/// (Bodies are bounded per method by `auth::Authenticated`, messages by each service's limits.)
pub fn server_builder(max_streams: u32) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(max_streams)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .tcp_keepalive(Some(std::time::Duration::from_secs(60)))
}
