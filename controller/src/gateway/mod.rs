//! The HTTP gateway: the controller's public HTTP listener (`--http-listen`), separate from the
//! management APIs, serving function URLs and API Gateway–style HTTP APIs with Lambda's event and
//! response formats. `model.rs` has what it serves (stored by `store::GatewayStore`, managed
//! through `api::gateway`).
pub mod model;
