//! What runs without a request: re-adopting sandboxes at start
//! ([`Sandboxes::recover`]), the reaper ([`Sandboxes::reap`],
//! [`Sandboxes::reconcile`]) and pausing at shutdown ([`Sandboxes::shutdown`]).

use std::sync::Arc;

use super::{Sandboxes, now};
use crate::config::ExpiryAction;
use crate::error::Result;
use crate::model::SandboxState;
use crate::provider::Inspection;
use crate::store::ListFilter;

impl Sandboxes {
    /// At startup: re-adopt sandboxes that are still running, mark the rest
    /// paused. Only records of creates that never finished are dropped.
    pub async fn recover(&self) -> Result<()> {
        let (mut adopted, mut paused, mut dropped, mut gone) = (0, 0, 0, 0);
        for mut record in self.store.all()? {
            if matches!(record.state, SandboxState::Paused | SandboxState::Gone)
                || record.provider != self.provider.name()
            {
                continue;
            }
            let found = match self.provider.inspect(record.provider_ref()).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(sandbox = %record.id, "cannot check it: {e}");
                    Inspection::Stopped
                }
            };
            match found {
                Inspection::Running(running) => {
                    record.set_running(running);
                    adopted += 1;
                }
                Inspection::Stopped | Inspection::Gone
                    if record.state == SandboxState::Creating =>
                {
                    // Its create never answered, so no client knows this id:
                    // clean up what was started rather than keep a half-made sandbox.
                    if let Err(e) = self.provider.delete(record.provider_ref()).await {
                        tracing::warn!(sandbox = %record.id, "cannot clean up an unfinished create: {e}");
                        continue;
                    }
                    self.store.delete(&record.id)?;
                    dropped += 1;
                    continue;
                }
                Inspection::Stopped => {
                    record.state = SandboxState::Paused;
                    paused += 1;
                }
                Inspection::Gone => {
                    tracing::warn!(sandbox = %record.id, "its provider no longer has it; marking it gone");
                    record.state = SandboxState::Gone;
                    record.endpoint = None;
                    gone += 1;
                }
            }
            self.store.update(&record)?;
        }
        if adopted + paused + dropped + gone > 0 {
            tracing::info!(
                adopted,
                paused,
                dropped,
                gone,
                "recovered sandboxes left by the previous start"
            );
        }
        Ok(())
    }

    /// One pass of the reaper: pause or delete sandboxes whose timeout passed.
    pub async fn reap(&self) -> Result<()> {
        let now = now();
        let mut due = self.store.expired(SandboxState::Running, now)?;
        if self.on_expire == ExpiryAction::Delete {
            due.extend(self.store.expired(SandboxState::Paused, now)?);
            due.extend(self.store.expired(SandboxState::Gone, now)?);
        }
        for stale in due {
            let _lock = self.locks.lock(&stale.id).await;
            // Re-read: activity may have extended it meanwhile.
            let Some(mut record) = self.store.get(&stale.id)? else {
                continue;
            };
            if record.expires_at > now
                || record.state == SandboxState::Creating
                || self.check_provider(&record).is_err()
            {
                continue;
            }
            let result = match self.on_expire {
                ExpiryAction::Delete => self.delete_locked(&record).await,
                ExpiryAction::Pause if record.state == SandboxState::Running => {
                    self.pause_locked(&mut record).await
                }
                ExpiryAction::Pause => Ok(()),
            };
            match result {
                Ok(()) => tracing::info!(sandbox = %record.id, "timed out"),
                Err(e) => tracing::warn!(sandbox = %record.id, "reaper could not stop it: {e}"),
            }
        }
        Ok(())
    }

    /// Compares the records with the provider's own list of its sandboxes,
    /// for providers that can list them (E2B): a sandbox the provider lost
    /// or killed is marked gone, one it paused by itself paused, and the
    /// provider's own timeout of a running one is pushed forward when
    /// activity here moved its expiry, to `margin_secs` past it, so that the
    /// reaper (not the provider) acts first.
    ///
    /// Providers that cannot list are asked about each running sandbox, so
    /// one that died on its own is shown paused instead of with a dead URL.
    pub async fn reconcile(&self, margin_secs: u64) -> Result<()> {
        let Some(listed_by_provider) = self.provider.list_managed().await? else {
            return self.refresh_running().await;
        };
        let (mut gone, mut paused, mut pushed) = (0, 0, 0);
        for stored in self.store.all()? {
            if stored.provider != self.provider.name()
                || !matches!(stored.state, SandboxState::Running | SandboxState::Paused)
            {
                continue;
            }
            let _lock = self.locks.lock(&stored.id).await;
            let Some(mut record) = self.store.get(&stored.id)? else {
                continue;
            };
            let listed = record
                .provider_id
                .as_ref()
                .and_then(|p| listed_by_provider.get(p));
            match (record.state, listed) {
                (SandboxState::Running, Some(s)) if s.running => {
                    let want = record.expires_at + margin_secs as i64;
                    if s.ends_at.is_some_and(|end| end < want) {
                        let secs = (want - now()).max(1) as u64;
                        let set = self.provider.set_timeout(record.provider_ref(), secs).await;
                        match self.note_gone(&mut record, set).await {
                            Ok(()) => pushed += 1,
                            Err(e) => {
                                tracing::warn!(sandbox = %record.id, "cannot push its timeout: {e}")
                            }
                        }
                    }
                }
                (SandboxState::Running, _) | (SandboxState::Paused, None) => {
                    // The list may be older than the record (a resume may
                    // have finished since): ask about this one before
                    // changing it.
                    match self.provider.inspect(record.provider_ref()).await {
                        Ok(Inspection::Gone) => {
                            tracing::warn!(sandbox = %record.id, "its provider no longer has it; marking it gone");
                            self.mark(&mut record, SandboxState::Gone).await?;
                            gone += 1;
                        }
                        Ok(Inspection::Stopped) if record.state == SandboxState::Running => {
                            tracing::info!(sandbox = %record.id, "its provider stopped it; marking it paused");
                            self.mark(&mut record, SandboxState::Paused).await?;
                            paused += 1;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(sandbox = %record.id, "cannot check it: {e}"),
                    }
                }
                _ => {}
            }
        }
        if gone + paused > 0 {
            tracing::info!(gone, paused, "reconciled with the provider");
        }
        if pushed > 0 {
            tracing::debug!(pushed, "pushed the provider's timeouts forward");
        }
        Ok(())
    }

    /// Refreshes every running record from the provider, one by one.
    async fn refresh_running(&self) -> Result<()> {
        let running = self.store.list(&ListFilter {
            state: Some(SandboxState::Running),
            limit: usize::MAX,
            ..ListFilter::default()
        })?;
        for r in running {
            if self.check_provider(&r).is_err() {
                continue;
            }
            let _lock = self.locks.lock(&r.id).await;
            let Some(mut record) = self.store.get(&r.id)? else {
                continue;
            };
            if record.state == SandboxState::Running
                && let Err(e) = self.refresh(&mut record).await
            {
                tracing::warn!(sandbox = %record.id, "cannot check it: {e}");
            }
        }
        Ok(())
    }

    /// On shutdown: pause running sandboxes when the provider wants that.
    pub async fn shutdown(self: &Arc<Self>) {
        self.pool.close_all().await;
        if !self.provider.capabilities().pause_on_shutdown {
            return;
        }
        let Ok(running) = self.store.list(&ListFilter {
            state: Some(SandboxState::Running),
            limit: usize::MAX,
            ..ListFilter::default()
        }) else {
            return;
        };
        let mut tasks = tokio::task::JoinSet::new();
        for r in running {
            let me = self.clone();
            tasks.spawn(async move {
                let _lock = me.locks.lock(&r.id).await;
                if let Ok(Some(mut record)) = me.store.get(&r.id)
                    && record.state == SandboxState::Running
                    && me.check_provider(&record).is_ok()
                    && let Err(e) = me.pause_locked(&mut record).await
                {
                    tracing::warn!(sandbox = %record.id, "could not pause at shutdown: {e}");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}
