//! Prometheus metrics, served at `GET /metrics`.
//!
//! Counters (all `switchboard_…`): `handshakes_total{namespace,outcome}`,
//! `events_appended_total`, `event_deliveries_total` (live and catch-up),
//! `subscriber_catch_ups_total`, `subscribers_dropped_lagging_total`,
//! `runs_started_total`, `runs_finished_total{reason}`. With several nodes
//! (`redis_url`), every series carries the label `node` (the node id), and
//! `cluster_notices_sent_total`, `cluster_notices_received_total`,
//! `cluster_notices_dropped_total`, `cluster_gap_events_total` (events
//! read from the database because another node committed them) and
//! `cluster_head_checks_total` count what goes between nodes.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const HANDSHAKES: &str = "switchboard_handshakes_total";
pub const EVENTS_APPENDED: &str = "switchboard_events_appended_total";
pub const DELIVERIES: &str = "switchboard_event_deliveries_total";
pub const CATCH_UPS: &str = "switchboard_subscriber_catch_ups_total";
pub const LAGGING_DROPS: &str = "switchboard_subscribers_dropped_lagging_total";
pub const RUNS_STARTED: &str = "switchboard_runs_started_total";
pub const RUNS_FINISHED: &str = "switchboard_runs_finished_total";
pub const CLUSTER_NOTICES_SENT: &str = "switchboard_cluster_notices_sent_total";
pub const CLUSTER_NOTICES_RECEIVED: &str = "switchboard_cluster_notices_received_total";
pub const CLUSTER_NOTICES_DROPPED: &str = "switchboard_cluster_notices_dropped_total";
pub const CLUSTER_GAP_EVENTS: &str = "switchboard_cluster_gap_events_total";
pub const CLUSTER_HEAD_CHECKS: &str = "switchboard_cluster_head_checks_total";
pub const CLUSTER_LEASES_TAKEN: &str = "switchboard_cluster_leases_taken_total";
pub const CLUSTER_LEASES_TAKEN_OVER: &str = "switchboard_cluster_leases_taken_over_total";
pub const CLUSTER_LEASES_HELD: &str = "switchboard_cluster_leases_held";
pub const CLUSTER_LEASES_LOST: &str = "switchboard_cluster_leases_lost_total";
pub const CLUSTER_CONTROL_SENT: &str = "switchboard_cluster_control_sent_total";
pub const CLUSTER_CONTROL_RECEIVED: &str = "switchboard_cluster_control_received_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
pub fn handle() -> PrometheusHandle {
    install(None)
}

/// Installs the process-wide recorder (once), every series labelled with
/// `node` when given, and returns its handle.
pub fn install(node: Option<&str>) -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            if let Some(node) = node {
                builder = builder.add_global_label("node", node);
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            for (name, help) in [
                (
                    HANDSHAKES,
                    "Socket.IO namespace handshakes, by namespace and outcome",
                ),
                (EVENTS_APPENDED, "Events committed to session logs"),
                (DELIVERIES, "Events handed to subscribers"),
                (
                    CATCH_UPS,
                    "Times a subscriber fell behind and caught up from the log",
                ),
                (LAGGING_DROPS, "Subscribers dropped with session:lagged"),
                (RUNS_STARTED, "Agent runs started"),
                (RUNS_FINISHED, "Agent runs finished, by reason"),
                (
                    CLUSTER_NOTICES_SENT,
                    "Commit notices published to other nodes",
                ),
                (
                    CLUSTER_NOTICES_RECEIVED,
                    "Commit notices received from other nodes",
                ),
                (
                    CLUSTER_NOTICES_DROPPED,
                    "Commit notices not published (queue full or Redis unreachable)",
                ),
                (
                    CLUSTER_GAP_EVENTS,
                    "Events other nodes committed, read from the database for local subscribers",
                ),
                (
                    CLUSTER_HEAD_CHECKS,
                    "Periodic reads of the database head of locally watched sessions",
                ),
                (
                    CLUSTER_LEASES_TAKEN,
                    "Session run leases this node took to run a session's runs",
                ),
                (
                    CLUSTER_LEASES_TAKEN_OVER,
                    "Session run leases taken over from a node that stopped renewing them",
                ),
                (
                    CLUSTER_LEASES_LOST,
                    "Session run leases this node found taken over by another node",
                ),
                (
                    CLUSTER_CONTROL_SENT,
                    "Run control messages (stop, interrupt, wake) sent to other nodes",
                ),
                (
                    CLUSTER_CONTROL_RECEIVED,
                    "Run control messages received from other nodes",
                ),
            ] {
                metrics::describe_counter!(name, help);
            }
            metrics::describe_gauge!(
                CLUSTER_LEASES_HELD,
                "Session run leases this node holds now (sessions whose runs it executes)"
            );
            handle
        })
        .clone()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render() -> impl axum::response::IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
}
