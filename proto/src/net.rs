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
