//! Database migrations, applied at start (`switchboard serve`) and by
//! `switchboard migrate`.
//!
//! Migrations are append-only once they have landed on `main`: change the
//! schema by adding a new `mYYYYMMDD_HHMMSS_verb_noun.rs`, never by editing one.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_core_tables;
mod m20261122_000002_add_message_seq;
mod m20261203_000003_add_run_leases;
mod m20261203_000004_create_gateways;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_core_tables::Migration),
            Box::new(m20261122_000002_add_message_seq::Migration),
            Box::new(m20261203_000003_add_run_leases::Migration),
            Box::new(m20261203_000004_create_gateways::Migration),
        ]
    }
}
