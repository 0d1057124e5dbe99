#[allow(clippy::module_inception)]
mod client;
pub use client::Iter;
pub use {client::Client, client::ClientBuilder, client::Iter as SocketIter};
