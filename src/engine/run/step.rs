//! A run's steps: call the provider, log its text as it streams, record
//! the assistant message and its tool calls, wait for them, and call again.

use std::collections::VecDeque;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::plan::plan_calls;
use super::wait::{Waited, wait_for_calls};
use super::{End, RunError, Turn};
use crate::engine::calls;
use crate::engine::conversation;
use crate::engine::provider::{ChatRequest, ProviderError, ProviderEvent, Usage};
use crate::events;
use crate::ids::MessageId;
use crate::log::{NewEvent, Submitted};
use entity::states::MessageStatus;

/// Text deltas handed to the log and not yet known to be committed. The
/// run does not wait for each commit before reading the next delta (those
/// that arrive meanwhile share the next commit); the partial text it would
/// keep grows only by committed deltas.
#[derive(Default)]
struct Deltas(VecDeque<(Submitted, String)>);

impl Deltas {
    /// Takes in the deltas already committed, in order.
    fn settle(&mut self, turn: &Turn) -> Result<(), RunError> {
        while let Some((submitted, _)) = self.0.front_mut() {
            match submitted.try_wait() {
                None => break,
                Some(result) => {
                    result?;
                    let (_, delta) = self.0.pop_front().expect("a front");
                    turn.add_text(&delta);
                }
            }
        }
        Ok(())
    }

    /// Waits for every delta's commit.
    async fn flush(&mut self, turn: &Turn) -> Result<(), RunError> {
        while let Some((submitted, delta)) = self.0.pop_front() {
            submitted.wait().await?;
            turn.add_text(&delta);
        }
        Ok(())
    }
}

/// Calls the provider until it answers without tool calls.
pub(super) async fn steps(turn: Turn) -> Result<End, RunError> {
    let max_steps = turn.inner.settings.max_steps;
    for _ in 0..max_steps {
        let messages = conversation::load(&turn.inner.db, &turn.session).await?;
        let offer = turn.inner.offer(&turn.owner).await;
        let request = ChatRequest {
            messages,
            tools: offer.specs(),
        };
        let message_id = MessageId::generate();
        turn.progress().message = Some((message_id.clone(), String::new()));
        let mut stream = turn
            .inner
            .provider
            .stream(request)
            .map(|item| item.map(ProviderEvent::storable));
        let mut calls = Vec::new();
        let mut deltas = Deltas::default();
        loop {
            let item = tokio::select! {
                biased;
                () = turn.cancel.cancelled() => {
                    deltas.flush(&turn).await?;
                    return Ok(End::Cancelled);
                }
                item = stream.next() => item,
            };
            match item {
                Some(Ok(ProviderEvent::TextDelta(delta))) => {
                    if delta.is_empty() {
                        continue;
                    }
                    let event = NewEvent::of(
                        Some(&turn.run_id),
                        events::TextDelta {
                            message_id: message_id.clone(),
                            delta: delta.clone(),
                        },
                    );
                    let submitted = turn
                        .inner
                        .log
                        .submit_fenced(&turn.session, vec![event], None, turn.fence.clone())
                        .await?;
                    turn.progress().last_sent = Instant::now();
                    deltas.0.push_back((submitted, delta));
                    deltas.settle(&turn)?;
                }
                Some(Ok(ProviderEvent::ToolCall(call))) => calls.push(call),
                Some(Ok(ProviderEvent::Finished { usage, .. })) => {
                    add_usage(&mut turn.progress().usage, usage);
                    break;
                }
                Some(Err(error)) => {
                    deltas.flush(&turn).await?;
                    return Err(error.into());
                }
                None => {
                    deltas.flush(&turn).await?;
                    return Err(ProviderError::Incomplete.into());
                }
            }
        }
        deltas.flush(&turn).await?;
        drop(stream);
        let ids = calls::make_ids_unique(&turn.inner.db, &mut calls).await?;

        let text = turn
            .progress()
            .message
            .as_ref()
            .map(|(_, text)| text.clone())
            .unwrap_or_default();
        let mut batch = turn.batch();
        batch.assistant_message(&message_id, text, &calls, MessageStatus::Complete);
        let open = plan_calls(&turn, &mut batch, &offer, &calls, &ids).await;
        turn.commit(batch).await?;
        {
            let mut progress = turn.progress();
            progress.message = None;
            progress.open_calls = open;
        }
        if calls.is_empty() {
            return Ok(End::Completed);
        }
        if wait_for_calls(&turn).await? == Waited::Cancelled {
            return Ok(End::Cancelled);
        }
    }
    Err(RunError::MaxSteps(max_steps))
}

fn add_usage(total: &mut Option<Usage>, usage: Option<Usage>) {
    if let Some(usage) = usage {
        let sum = total.get_or_insert_with(Usage::default);
        sum.prompt_tokens += usage.prompt_tokens;
        sum.completion_tokens += usage.completion_tokens;
        sum.total_tokens += usage.total_tokens;
    }
}
