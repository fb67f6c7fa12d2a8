//! Read-your-writes: waiting until the read model has what a client just
//! wrote.
//!
//! A command's reply says which stream sequences it caused; a read that
//! passes one waits (bounded) until the projection has applied it. Every
//! wait is woken by the applies themselves (a `watch` the store bumps after
//! each committed transaction), never by polling.

use super::store::ReadModel;
use ordersaga_events::StreamId;
use std::collections::BTreeMap;
use std::time::Duration;

impl ReadModel {
    /// Read-your-writes: waits until the read model has applied `stream` up
    /// to `sequence` (a command's reply says which sequences it caused), or
    /// `bound` passes. Woken by each apply, never by polling. `false` when
    /// the bound passed first (or the store cannot be read).
    pub async fn wait_for(&self, stream: &StreamId, sequence: u64, bound: Duration) -> bool {
        self.wait_until(bound, || match self.version(stream) {
            Ok(version) => Some(version >= sequence),
            Err(err) => {
                tracing::warn!(stream = %stream, cause = %err, "cannot read a stream's version");
                None
            }
        })
        .await
    }

    /// Waits until the read model's next offset of every partition in
    /// `targets` is at least its target, or `bound` passes.
    pub async fn wait_for_offsets(
        &self,
        targets: &BTreeMap<(String, i32), i64>,
        bound: Duration,
    ) -> bool {
        self.wait_until(bound, || match self.offsets() {
            Ok(offsets) => Some(targets.iter().all(|(partition, target)| {
                *target <= 0 || offsets.get(partition).is_some_and(|next| next >= target)
            })),
            Err(err) => {
                tracing::warn!(cause = %err, "cannot read the read model's offsets");
                None
            }
        })
        .await
    }

    /// Waits until `done` says `Some(true)` (checked after every change),
    /// `None` (an error: give up), or `bound` passes.
    async fn wait_until(&self, bound: Duration, mut done: impl FnMut() -> Option<bool>) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        // Subscribed before the first check, so an apply between the check
        // and the wait still wakes it.
        let mut changes = self.inner.changes.subscribe();
        loop {
            match done() {
                Some(true) => return true,
                None => return false,
                Some(false) => {}
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as the store: never closed here.
                Ok(Err(_)) | Err(_) => return done() == Some(true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::tests::{product_added, record_of};
    use super::super::store::DIR_NAME;
    use super::*;
    use uuid::Uuid;

    fn temp() -> (tempfile::TempDir, ReadModel) {
        let dir = tempfile::tempdir().unwrap();
        let model = ReadModel::open(dir.path().join(DIR_NAME)).unwrap();
        (dir, model)
    }

    #[tokio::test]
    async fn wait_for_returns_once_an_apply_reaches_the_sequence() {
        let (_dir, model) = temp();
        let id = Uuid::new_v4();
        let record = record_of(0, product_added(id, 1));
        let stream = record.event.position().unwrap().0;
        // The waiter is parked before the apply: only the apply can wake it.
        let (parked_tx, parked) = tokio::sync::oneshot::channel();
        let waiter = {
            let model = model.clone();
            tokio::spawn(async move {
                let _ = parked_tx.send(());
                model.wait_for(&stream, 1, Duration::from_secs(600)).await
            })
        };
        parked.await.unwrap();
        tokio::task::yield_now().await;
        model.apply(&record).unwrap();
        assert!(waiter.await.unwrap());
        // Already there: no wait at all.
        assert!(model.wait_for(&stream, 1, Duration::ZERO).await);
    }

    #[tokio::test]
    async fn wait_for_gives_up_after_the_bound_when_the_sequence_never_comes() {
        let (_dir, model) = temp();
        let id = Uuid::new_v4();
        let record = record_of(0, product_added(id, 1));
        let stream = record.event.position().unwrap().0;
        model.apply(&record).unwrap();
        // Sequence 2 is never applied; a short bound is the test's only wait.
        assert!(!model.wait_for(&stream, 2, Duration::from_millis(20)).await);
        let mut targets = BTreeMap::new();
        targets.insert((record.topic.clone(), record.partition), 1);
        assert!(model.wait_for_offsets(&targets, Duration::ZERO).await);
        targets.insert((record.topic.clone(), record.partition), 2);
        assert!(
            !model
                .wait_for_offsets(&targets, Duration::from_millis(20))
                .await
        );
    }
}
