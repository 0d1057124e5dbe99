//! Where JSON Schema work runs: on tokio's blocking threads, never on an
//! async worker, and never more of it than a fixed amount at once.
//!
//! - **Registrations** are admitted or refused at once: at most
//!   [`RUNNING`] validate at a time, at most [`WAITING`] more wait for
//!   their turn, and one user has at most [`PER_USER`] of them in flight.
//!   Past that, `busy` — a gateway retries later — rather than a queue that
//!   grows with the attack.
//! - **Checks of a call's arguments** never get `busy` (a run must go on):
//!   they wait for one of their own [`RUNNING`] slots, so registrations
//!   cannot hold them up, and each costs little (the schema limits of
//!   [`super::schema`]).
//!
//! A job keeps its slot until it has finished on its thread, even if the
//! request that started it is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::EngineError;
use crate::auth::UserId;

/// Jobs of each kind that run at once.
pub const RUNNING: usize = 2;
/// Registrations that may wait for a running slot.
pub const WAITING: usize = 32;
/// Registrations of one user in flight (running or waiting).
pub const PER_USER: usize = 4;

/// The blocking threads' share of schema work.
pub struct Compiler {
    /// Registrations running or waiting: `RUNNING + WAITING` permits.
    admitted: Arc<Semaphore>,
    registrations: Arc<Semaphore>,
    checks: Arc<Semaphore>,
    per_user: Arc<Mutex<HashMap<UserId, usize>>>,
}

impl Default for Compiler {
    fn default() -> Self {
        Self {
            admitted: Arc::new(Semaphore::new(RUNNING + WAITING)),
            registrations: Arc::new(Semaphore::new(RUNNING)),
            checks: Arc::new(Semaphore::new(RUNNING)),
            per_user: Arc::default(),
        }
    }
}

impl Compiler {
    /// Runs a registration's `job` for `user` on a blocking thread, or
    /// refuses it with `busy` when too many are in flight.
    pub async fn registration<T: Send + 'static>(
        &self,
        user: &UserId,
        job: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let mine =
            UserSlot::take(&self.per_user, user).ok_or(EngineError::RegistrationsInFlight)?;
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| EngineError::RegistrationsWaiting)?;
        let running = acquire(&self.registrations).await?;
        run(move || {
            let _slots = (mine, admitted, running);
            job()
        })
        .await?
    }

    /// Runs a check of arguments on a blocking thread, after the checks
    /// before it.
    pub async fn check<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let running = acquire(&self.checks).await?;
        run(move || {
            let _slot = running;
            job()
        })
        .await
    }
}

async fn acquire(semaphore: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, EngineError> {
    semaphore
        .clone()
        .acquire_owned()
        .await
        .map_err(EngineError::SchemaSlots)
}

async fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(EngineError::SchemaJob)
}

/// One of a user's registrations in flight; counted until dropped.
struct UserSlot {
    counts: Arc<Mutex<HashMap<UserId, usize>>>,
    user: UserId,
}

impl UserSlot {
    fn take(counts: &Arc<Mutex<HashMap<UserId, usize>>>, user: &UserId) -> Option<Self> {
        let mut map = counts.lock().expect("per-user registrations");
        let count = map.entry(user.clone()).or_default();
        if *count >= PER_USER {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: counts.clone(),
            user: user.clone(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().expect("per-user registrations");
        if let Some(count) = map.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::new(name.to_owned())
    }

    /// A job that holds its slot until `gate` has a permit for it.
    fn held(gate: &Arc<Semaphore>) -> impl FnOnce() -> Result<(), EngineError> + use<> {
        let gate = gate.clone();
        move || {
            let handle = tokio::runtime::Handle::current();
            handle.block_on(gate.acquire()).unwrap().forget();
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_user_gets_busy_past_their_share_and_others_do_not() {
        let compiler = Arc::new(Compiler::default());
        let gate = Arc::new(Semaphore::new(0));
        let mut jobs = Vec::new();
        for _ in 0..PER_USER {
            let compiler = compiler.clone();
            let job = held(&gate);
            jobs.push(tokio::spawn(async move {
                compiler.registration(&user("alice"), job).await
            }));
        }
        // The spawned requests take their slots.
        while compiler.per_user.lock().unwrap().get(&user("alice")) != Some(&PER_USER) {
            tokio::task::yield_now().await;
        }
        let refused = compiler.registration(&user("alice"), || Ok(())).await;
        assert!(
            matches!(refused, Err(EngineError::RegistrationsInFlight)),
            "{refused:?}"
        );
        let bob = {
            let compiler = compiler.clone();
            tokio::spawn(async move { compiler.registration(&user("bob"), || Ok(())).await })
        };
        // A check of arguments does not wait for registrations.
        assert_eq!(compiler.check(|| 7).await.unwrap(), 7);
        gate.add_permits(PER_USER);
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        bob.await.unwrap().unwrap();
        assert!(compiler.per_user.lock().unwrap().is_empty());
        assert_eq!(
            compiler.admitted.available_permits(),
            RUNNING + WAITING,
            "every slot is given back"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registrations_past_the_queue_get_busy() {
        let compiler = Arc::new(Compiler::default());
        let gate = Arc::new(Semaphore::new(0));
        let mut jobs = Vec::new();
        for i in 0..RUNNING + WAITING {
            let compiler = compiler.clone();
            let job = held(&gate);
            jobs.push(tokio::spawn(async move {
                compiler.registration(&user(&format!("u{i}")), job).await
            }));
        }
        while compiler.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = compiler.registration(&user("late"), || Ok(())).await;
        assert!(
            matches!(refused, Err(EngineError::RegistrationsWaiting)),
            "{refused:?}"
        );
        gate.add_permits(RUNNING + WAITING);
        for job in jobs {
            job.await.unwrap().unwrap();
        }
    }
}
