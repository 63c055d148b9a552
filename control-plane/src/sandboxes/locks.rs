//! One lock per sandbox, so that lifecycle changes of one sandbox never
//! interleave while different sandboxes change in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::ids::SandboxId;

/// The locks of the sandboxes someone is changing now. An entry lives only
/// while a [`SandboxLock`] for it is held or awaited, so ids that are asked
/// about (even ids that do not exist) leave nothing behind.
#[derive(Default)]
pub struct SandboxLocks {
    held: Mutex<HashMap<SandboxId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one sandbox is being changed; released on drop.
pub struct SandboxLock<'a> {
    guard: Option<OwnedMutexGuard<()>>,
    id: SandboxId,
    locks: &'a SandboxLocks,
}

impl SandboxLocks {
    /// Waits until no one else changes sandbox `id`, and holds it.
    pub async fn lock(&self, id: &SandboxId) -> SandboxLock<'_> {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.entry(id.clone()).or_default().clone()
        };
        SandboxLock {
            guard: Some(mutex.lock_owned().await),
            id: id.clone(),
            locks: self,
        }
    }

    /// How many sandboxes have an entry (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for SandboxLock<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        self.guard = None;
        // Only the map's own handle left: nobody holds or awaits it.
        if held
            .get(&self.id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            held.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lock_excludes_and_leaves_nothing_behind() {
        let locks = Arc::new(SandboxLocks::default());
        let id = SandboxId::parse("sb-1").unwrap();
        let first = locks.lock(&id).await;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let second = {
            let locks = locks.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let _held = locks.lock(&id).await;
                tx.send(()).unwrap();
            })
        };
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "two holders of one sandbox's lock");
        // Another sandbox is not held up.
        drop(locks.lock(&SandboxId::parse("sb-2").unwrap()).await);
        drop(first);
        second.await.unwrap();
        assert_eq!(locks.len(), 0, "an entry outlived its last holder");
    }
}
