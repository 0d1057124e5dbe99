//! A client's request as its handler receives it: the one argument,
//! decoded, once the socket's request budget has admitted it.

use std::convert::Infallible;
use std::sync::Arc;

use governor::DefaultDirectRateLimiter;
use governor::clock::{Clock, DefaultClock};
use serde::de::DeserializeOwned;
use socketioxide::adapter::Adapter;
use socketioxide::extract::TryData;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide_core::Value;

use crate::config::Rate;
use crate::error::ApiError;

/// The requests one socket may make (`limits.request_rate`); kept in the
/// socket's extensions.
#[derive(Clone)]
pub struct RequestBudget(Option<Arc<(Rate, DefaultDirectRateLimiter)>>);

impl RequestBudget {
    pub fn new(rate: Option<Rate>) -> Self {
        Self(rate.map(|rate| Arc::new((rate, DefaultDirectRateLimiter::direct(rate.quota())))))
    }

    fn admit(&self) -> Result<(), ApiError> {
        let Some((rate, limiter)) = self.0.as_deref() else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            crate::rate::refusal("requests on this connection", rate, wait).into()
        })
    }
}

/// Whether the socket's request budget admitted this request, for requests
/// whose argument does not matter.
pub struct Admitted(pub Result<(), ApiError>);

impl<A: Adapter> FromMessageParts<A> for Admitted {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Admitted(admit(s)))
    }
}

fn admit<A: Adapter>(s: &Socket<A>) -> Result<(), ApiError> {
    match s.extensions.get::<RequestBudget>() {
        Some(budget) => budget.admit(),
        None => Ok(()),
    }
}

/// Extracts a request's one argument as `T`: `rate_limited` past the
/// socket's budget, `invalid_payload` when it is not a `T`. Never fails as
/// an extractor, so every request gets its acknowledgement.
pub struct Request<T>(pub Result<T, ApiError>);

impl<T: DeserializeOwned, A: Adapter> FromMessageParts<A> for Request<T> {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        v: &mut Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let request = admit(s).and_then(|()| {
            let Ok(TryData(data)) = TryData::<T>::from_message_parts(s, v, ack_id);
            data.map_err(|_| ApiError::InvalidPayload("expected one object argument".into()))
        });
        Ok(Request(request))
    }
}
