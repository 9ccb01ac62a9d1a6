//! Compiles `proto/lamina/v1/{lamina,network,cluster,gateway}.proto` (one package, `lamina.v1`) with the
//! pure-Rust `protox` compiler (no system protoc needed)
//! and generates the tonic client and server code, plus the encoded descriptor set used by gRPC reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/lamina/v1/lamina.proto",
        "proto/lamina/v1/network.proto",
        "proto/lamina/v1/cluster.proto",
        "proto/lamina/v1/gateway.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("lamina_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // Secrets: Debug is written by hand, redacted (`session.rs`).
        .skip_debug("lamina.v1.SessionCredentials")
        .compile_fds(fds)?;
    Ok(())
}
