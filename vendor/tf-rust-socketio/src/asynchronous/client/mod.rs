mod ack;
pub(crate) mod builder;
#[cfg(feature = "async-callbacks")]
mod callback;
#[allow(clippy::module_inception)]
pub(crate) mod client;
