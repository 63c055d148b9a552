//! The table of open connections: admission against the budget, and the
//! choice of which idle connection to close when room is needed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};

/// Open connections, oldest first.
pub(crate) struct Connections {
    max: usize,
    table: Mutex<Table>,
    /// Set when the server stops.
    stopping: watch::Sender<bool>,
    /// Woken when a connection leaves the table.
    left: Notify,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Arc<Conn>>,
}

/// One connection's shared state.
pub(crate) struct Conn {
    /// Requests whose response has not been sent whole yet (a streamed
    /// response counts until its stream ends).
    in_flight: AtomicUsize,
    /// Chosen to make room; its task closes it.
    evicting: AtomicBool,
    evict: Notify,
}

pub(crate) enum Admission {
    Admitted(Slot),
    Full,
}

/// A connection's place in the table; leaving it when dropped.
#[derive(Clone)]
pub(crate) struct Slot {
    inner: Arc<SlotInner>,
}

struct SlotInner {
    id: u64,
    conn: Arc<Conn>,
    table: Arc<Connections>,
    stopping: watch::Receiver<bool>,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
        self.table.left.notify_waiters();
    }
}

impl Connections {
    pub(crate) fn new(max: usize) -> Self {
        Connections {
            max,
            table: Mutex::new(Table::default()),
            stopping: watch::channel(false).0,
            left: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a new connection: free, or made by closing the oldest
    /// idle connection; [`Admission::Full`] when every one is busy.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut table = self.lock();
        let live = table
            .open
            .values()
            .filter(|c| !c.evicting.load(Ordering::Relaxed))
            .count();
        if live >= self.max && !evict_oldest_idle(&table) {
            return Admission::Full;
        }
        table.next_id += 1;
        let id = table.next_id;
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        table.open.insert(id, conn.clone());
        Admission::Admitted(Slot {
            inner: Arc::new(SlotInner {
                id,
                conn,
                table: self.clone(),
                stopping: self.stopping.subscribe(),
            }),
        })
    }

    /// Closes the oldest idle connection, if there is one.
    pub(crate) fn evict_idle(&self) {
        evict_oldest_idle(&self.lock());
    }

    /// Tells every connection, present and future, that the server stops.
    pub(crate) fn stop_all(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves when no connection is left.
    pub(crate) async fn wait_empty(&self) {
        loop {
            let left = self.left.notified();
            if self.lock().open.is_empty() {
                return;
            }
            left.await;
        }
    }
}

fn evict_oldest_idle(table: &Table) -> bool {
    let idle = table
        .open
        .values()
        .find(|c| c.in_flight.load(Ordering::Acquire) == 0 && !c.evicting.load(Ordering::Relaxed));
    match idle {
        Some(conn) => {
            conn.evicting.store(true, Ordering::Relaxed);
            conn.evict.notify_one();
            true
        }
        None => false,
    }
}

impl Slot {
    /// Resolves when this connection is chosen to make room.
    pub(crate) async fn evicted(&self) {
        self.inner.conn.evict.notified().await;
    }

    /// Resolves when the server stops.
    pub(crate) async fn stopping(&self) {
        let mut stopping = self.inner.stopping.clone();
        let _ = stopping.wait_for(|s| *s).await;
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn request_started(&self) -> InFlight {
        self.inner.conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.inner.conn.clone())
    }
}

/// A request in flight on a connection; dropped when its response is sent
/// whole (or abandoned).
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
