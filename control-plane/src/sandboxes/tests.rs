//! The state machine of [`Sandboxes`] against a provider that keeps its
//! sandboxes in memory, so that every transition (and every refusal) is
//! checked without processes or network.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use clap::Parser;

use super::*;
use crate::config::ServeConfig;
use crate::error::ProviderError;
use crate::ids::ProviderId;
use crate::provider::{Capabilities, Endpoint, Running, SandboxRef};

/// What the fake provider holds of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Running,
    Stopped,
}

/// A provider whose sandboxes are entries in a map.
#[derive(Default)]
struct FakeProvider {
    held: Mutex<HashMap<SandboxId, Held>>,
    /// The next create fails.
    fail_create: Mutex<bool>,
}

impl FakeProvider {
    fn held(&self, id: &SandboxId) -> Option<Held> {
        self.held.lock().unwrap().get(id).copied()
    }
    fn set(&self, id: &SandboxId, held: Option<Held>) {
        let mut map = self.held.lock().unwrap();
        match held {
            Some(h) => map.insert(id.clone(), h),
            None => map.remove(id),
        };
    }
    fn running(id: &SandboxId) -> Running {
        Running {
            provider_id: ProviderId::from(id),
            endpoint: Endpoint {
                url: format!("http://127.0.0.1:1/{id}/mcp"),
                headers: BTreeMap::new(),
            },
            provider_data: serde_json::Value::Null,
        }
    }
    fn lost(id: &SandboxId) -> Error {
        ProviderError::lost(format!("no {id} here")).into()
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause: true,
            expose_port: false,
            isolated: true,
            pause_on_shutdown: true,
        }
    }
    fn describe(&self) -> String {
        "in memory".into()
    }
    async fn create(&self, spec: &CreateSpec) -> Result<Running> {
        if std::mem::take(&mut *self.fail_create.lock().unwrap()) {
            return Err(ProviderError::failed("no room at the fake").into());
        }
        self.set(&spec.sandbox_id, Some(Held::Running));
        Ok(Self::running(&spec.sandbox_id))
    }
    async fn resume(&self, sandbox: SandboxRef<'_>) -> Result<Running> {
        match self.held(sandbox.id) {
            None => Err(Self::lost(sandbox.id)),
            Some(_) => {
                self.set(sandbox.id, Some(Held::Running));
                Ok(Self::running(sandbox.id))
            }
        }
    }
    async fn pause(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        match self.held(sandbox.id) {
            None => Err(Self::lost(sandbox.id)),
            Some(_) => {
                self.set(sandbox.id, Some(Held::Stopped));
                Ok(())
            }
        }
    }
    async fn delete(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        self.set(sandbox.id, None);
        Ok(())
    }
    async fn inspect(&self, sandbox: SandboxRef<'_>) -> Result<Inspection> {
        Ok(match self.held(sandbox.id) {
            Some(Held::Running) => Inspection::Running(Self::running(sandbox.id)),
            Some(Held::Stopped) => Inspection::Stopped,
            None => Inspection::Gone,
        })
    }
}

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    config: ServeConfig,
}

struct World {
    sandboxes: Arc<Sandboxes>,
    provider: Arc<FakeProvider>,
    _dir: tempfile::TempDir,
}

fn world(args: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut argv = vec!["serve"];
    argv.extend_from_slice(args);
    // Without environment fallbacks: a CONTROL_PLANE_* variable in the
    // developer's shell must not change what these tests see.
    use clap::{CommandFactory, FromArgMatches};
    let matches = Serve::command()
        .mut_args(|a| a.env(None))
        .try_get_matches_from(argv)
        .unwrap();
    let config = Serve::from_arg_matches(&matches).unwrap().config;
    let store = Store::open(&dir.path().join("db")).unwrap();
    let provider = Arc::new(FakeProvider::default());
    World {
        sandboxes: Arc::new(Sandboxes::new(&config, store, provider.clone())),
        provider,
        _dir: dir,
    }
}

fn admin() -> Caller {
    Caller::default()
}

async fn create(w: &World, user: &str) -> SandboxId {
    let req = CreateSandboxRequest {
        user_id: Some(user.into()),
        ..Default::default()
    };
    let info = w.sandboxes.create(&admin(), req).await.unwrap();
    assert_eq!(info.status, SandboxState::Running);
    SandboxId::parse(&info.sandbox_id).unwrap()
}

fn state(w: &World, id: &SandboxId) -> Option<SandboxState> {
    w.sandboxes.store.get(id).unwrap().map(|r| r.state)
}

#[tokio::test]
async fn a_sandbox_goes_through_its_life() {
    let w = world(&[]);
    let id = create(&w, "ann").await;
    assert!(w.sandboxes.call_target(&admin(), &id).is_ok());

    let info = w.sandboxes.pause(&admin(), &id).await.unwrap();
    assert_eq!(info.status, SandboxState::Paused);
    assert_eq!(w.provider.held(&id), Some(Held::Stopped));
    // A paused sandbox takes no calls, and says what to do.
    let e = w.sandboxes.call_target(&admin(), &id).unwrap_err();
    assert!(
        matches!(
            e,
            Error::WrongState {
                is: SandboxState::Paused,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("resume or connect"), "{e}");

    let info = w.sandboxes.resume(&admin(), &id).await.unwrap();
    assert_eq!(info.status, SandboxState::Running);
    assert_eq!(w.provider.held(&id), Some(Held::Running));

    w.sandboxes.delete(&admin(), &id).await.unwrap();
    assert_eq!(state(&w, &id), None);
    assert_eq!(w.provider.held(&id), None);
    let e = w.sandboxes.status(&admin(), &id).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

#[tokio::test]
async fn operations_in_the_wrong_state_are_refused() {
    let w = world(&[]);
    let id = create(&w, "ann").await;
    let e = w.sandboxes.resume(&admin(), &id).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::WrongState {
                is: SandboxState::Running,
                wanted: SandboxState::Paused,
                ..
            }
        ),
        "{e}"
    );
    w.sandboxes.pause(&admin(), &id).await.unwrap();
    let e = w.sandboxes.pause(&admin(), &id).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::WrongState {
                is: SandboxState::Paused,
                wanted: SandboxState::Running,
                ..
            }
        ),
        "{e}"
    );
    // connect resumes a paused one.
    let info = w.sandboxes.connect(&admin(), &id).await.unwrap();
    assert_eq!(info.status, SandboxState::Running);
}

#[tokio::test]
async fn a_sandbox_its_provider_lost_becomes_gone_and_only_delete_is_left() {
    let w = world(&[]);
    let id = create(&w, "ann").await;
    w.provider.set(&id, None);
    // The provider's own answer is passed on, and the record marked gone.
    let e = w.sandboxes.pause(&admin(), &id).await.unwrap_err();
    assert!(e.is_lost(), "{e}");
    assert_eq!(state(&w, &id), Some(SandboxState::Gone));
    let info = w.sandboxes.status(&admin(), &id).await.unwrap();
    assert_eq!(info.mcp_url, "", "a gone sandbox kept its URL");
    for e in [
        w.sandboxes.resume(&admin(), &id).await.unwrap_err(),
        w.sandboxes.connect(&admin(), &id).await.unwrap_err(),
        w.sandboxes.call_target(&admin(), &id).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Gone { .. }), "{e}");
    }
    w.sandboxes.delete(&admin(), &id).await.unwrap();
    assert_eq!(state(&w, &id), None);
}

#[tokio::test]
async fn status_shows_what_the_provider_sees() {
    let w = world(&[]);
    let id = create(&w, "ann").await;
    w.provider.set(&id, Some(Held::Stopped));
    let info = w.sandboxes.status(&admin(), &id).await.unwrap();
    assert_eq!(info.status, SandboxState::Paused);
    w.provider.set(&id, None);
    // A paused record is not asked about: its state is the control plane's own.
    let info = w.sandboxes.status(&admin(), &id).await.unwrap();
    assert_eq!(info.status, SandboxState::Paused);
}

#[tokio::test]
async fn a_failed_create_leaves_no_record() {
    let w = world(&[]);
    *w.provider.fail_create.lock().unwrap() = true;
    let req = CreateSandboxRequest {
        user_id: Some("ann".into()),
        ..Default::default()
    };
    let e = w.sandboxes.create(&admin(), req).await.unwrap_err();
    assert!(matches!(e, Error::Provider(_)), "{e}");
    assert!(w.sandboxes.store.all().unwrap().is_empty());
}

#[tokio::test]
async fn no_more_than_max_running_run_at_once() {
    let w = world(&["--max-running", "1"]);
    let first = create(&w, "ann").await;
    let req = CreateSandboxRequest {
        user_id: Some("ann".into()),
        ..Default::default()
    };
    let e = w.sandboxes.create(&admin(), req.clone()).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    // A paused sandbox makes room, and takes it back only if there is some.
    w.sandboxes.pause(&admin(), &first).await.unwrap();
    let second = create(&w, "ann").await;
    let e = w.sandboxes.resume(&admin(), &first).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert_eq!(state(&w, &first), Some(SandboxState::Paused));
    w.sandboxes.delete(&admin(), &second).await.unwrap();
    w.sandboxes.resume(&admin(), &first).await.unwrap();
}

#[tokio::test]
async fn a_key_bound_to_a_user_sees_only_that_users_sandboxes() {
    let w = world(&[]);
    let anns = create(&w, "ann").await;
    let bob = Caller {
        user: Some("bob".into()),
    };
    let e = w.sandboxes.status(&bob, &anns).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = w.sandboxes.delete(&bob, &anns).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let req = CreateSandboxRequest {
        user_id: Some("ann".into()),
        ..Default::default()
    };
    let e = w.sandboxes.create(&bob, req).await.unwrap_err();
    assert!(matches!(e, Error::Forbidden { .. }), "{e}");
    let page = w.sandboxes.list(&bob, ListQuery::default()).await.unwrap();
    assert!(page.sandboxes.is_empty());
    assert_eq!(state(&w, &anns), Some(SandboxState::Running));
}

#[tokio::test]
async fn recovery_readopts_pauses_and_drops_unfinished_creates() {
    let w = world(&[]);
    let alive = create(&w, "ann").await;
    let died = create(&w, "ann").await;
    let lost = create(&w, "ann").await;
    w.provider.set(&died, Some(Held::Stopped));
    w.provider.set(&lost, None);
    // A create the control plane did not live to finish.
    let mut unfinished = w.sandboxes.store.get(&alive).unwrap().unwrap();
    unfinished.id = SandboxId::parse("sb-unfinished").unwrap();
    unfinished.state = SandboxState::Creating;
    unfinished.provider_id = None;
    unfinished.endpoint = None;
    w.sandboxes.store.insert(&unfinished).unwrap();

    w.sandboxes.recover().await.unwrap();
    assert_eq!(state(&w, &alive), Some(SandboxState::Running));
    assert_eq!(state(&w, &died), Some(SandboxState::Paused));
    assert_eq!(state(&w, &lost), Some(SandboxState::Gone));
    assert_eq!(state(&w, &unfinished.id), None);
}

#[tokio::test]
async fn the_reaper_pauses_what_expired_and_leaves_the_rest() {
    let w = world(&[]);
    let expired = create(&w, "ann").await;
    let fresh = create(&w, "ann").await;
    let mut record = w.sandboxes.store.get(&expired).unwrap().unwrap();
    record.expires_at = now() - 1;
    w.sandboxes.store.update(&record).unwrap();
    w.sandboxes.reap().await.unwrap();
    assert_eq!(state(&w, &expired), Some(SandboxState::Paused));
    assert_eq!(state(&w, &fresh), Some(SandboxState::Running));

    // With --on-expire delete, an expired sandbox goes whatever its state.
    let w = world(&["--on-expire", "delete"]);
    let expired = create(&w, "ann").await;
    w.sandboxes.pause(&admin(), &expired).await.unwrap();
    let mut record = w.sandboxes.store.get(&expired).unwrap().unwrap();
    record.expires_at = now() - 1;
    w.sandboxes.store.update(&record).unwrap();
    w.sandboxes.reap().await.unwrap();
    assert_eq!(state(&w, &expired), None);
    assert_eq!(w.provider.held(&expired), None);
}

#[tokio::test]
async fn a_call_pushes_the_expiry_forward() {
    let w = world(&["--default-timeout-secs", "100"]);
    let id = create(&w, "ann").await;
    let mut record = w.sandboxes.store.get(&id).unwrap().unwrap();
    record.expires_at = now() + 5;
    w.sandboxes.store.update(&record).unwrap();
    w.sandboxes.call_target(&admin(), &id).unwrap();
    let record = w.sandboxes.store.get(&id).unwrap().unwrap();
    assert!(record.expires_at >= now() + 99, "{}", record.expires_at);
}
