//! `lamina-noop-runtime`: the smallest native Lambda runtime, for the benchmark's no-op function (a
//! `provided` function whose `bootstrap` is this binary). It answers every event with `{}` over one
//! keep-alive HTTP/1.1 connection to `AWS_LAMBDA_RUNTIME_API`, so what a no-op invocation costs is
//! the platform's part, not an interpreter's. Standard library only; exits on any protocol error.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

const API: &str = "/2018-06-01/runtime/invocation";

/// Reads one response: its request id header (if any) and its body.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut request_id) = (0usize, String::new());
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(std::io::Error::other)?;
            } else if name.eq_ignore_ascii_case("lambda-runtime-aws-request-id") {
                request_id = value.to_string();
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok((status, request_id, body))
}

fn main() -> std::io::Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(std::io::Error::other)?;
    let stream = TcpStream::connect(&api)?;
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        write!(w, "GET {API}/next HTTP/1.1\r\nHost: {api}\r\n\r\n")?;
        let (status, id, _event) = read_response(&mut r)?;
        if status != 200 || id.is_empty() {
            return Err(std::io::Error::other(format!("next: status {status}")));
        }
        write!(
            w,
            "POST {API}/{id}/response HTTP/1.1\r\nHost: {api}\r\nContent-Length: 2\r\n\r\n{{}}"
        )?;
        let (status, _, _) = read_response(&mut r)?;
        if status != 202 {
            return Err(std::io::Error::other(format!("response: status {status}")));
        }
    }
}
