//! Handshake blocks prepared ahead of time ([`h2msg::PreparedBlock`]): a small pool per
//! (own key, flags), refilled by a background thread, from which [`crate::link::handshake`]
//! takes one block per RSA handshake.
//!
//! Our side of a handshake spends most of its time in §2.4's send loop: private-key
//! operations retried until the result has its top two bits clear (3–4 per 256-byte block
//! on average). They need only our own key, so a node that keeps a few blocks ready sends
//! its block as soon as a peer connects, after one cheap public operation per block.
//!
//! Each block is taken out of the pool by value and consumed by the handshake that sends
//! it, so no block reaches two peers; blocks left in a pool are wiped when it drops.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use h2msg::wire::WireOrder;
use h2msg::{OwnKeyId, OwnRsa, PreparedBlock};
use rsa::PrivateKey;
use rsa::traits::PublicKeyParts;

/// Blocks a pool keeps ready unless told otherwise: enough for a burst of connections
/// while the refill thread catches up (each block costs a few milliseconds).
pub const DEFAULT_POOL_SIZE: usize = 4;

/// The environment variable that sets the size of the pools [`link::handshake`] uses
/// (0 turns them off); [`set_pool_size`] overrides it.
///
/// [`link::handshake`]: crate::link::handshake
pub const POOL_SIZE_ENV: &str = "H2MSG_HANDSHAKE_POOL";

/// Prepared blocks for one own key and one `flags` value, refilled in the background.
pub struct BlockPool {
    shared: Arc<Shared>,
    refiller: Option<JoinHandle<()>>,
}

struct Shared {
    key: OwnKeyId,
    flags: u32,
    capacity: usize,
    state: Mutex<PoolState>,
    /// Signalled when a block is added or taken, and on shutdown.
    changed: Condvar,
}

struct PoolState {
    ready: VecDeque<PreparedBlock>,
    stopping: bool,
    /// Blocks the refill thread has made since the pool started.
    prepared: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic elsewhere cannot leave the queue half-updated (push and pop are whole),
        // so the state is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for BlockPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockPool")
            .field("key", &self.shared.key)
            .field("flags", &self.shared.flags)
            .field("capacity", &self.shared.capacity)
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl BlockPool {
    /// A pool of up to `capacity` blocks made with `key` for `flags`, filled by a thread
    /// started here. It starts empty.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(key: PrivateKey, flags: u32, capacity: usize) -> io::Result<Self> {
        // The RSA implementation of the links (`openssl-rsa` or not).
        let own = crate::link::link_own_rsa(key).map_err(io::Error::other)?;
        Self::start_with(own, flags, capacity)
    }

    /// [`start`](Self::start) with a chosen RSA implementation of our key (benchmarks
    /// comparing them; [`start`](Self::start) takes the one links use).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start_with<K: OwnRsa + Send + 'static>(
        own: K,
        flags: u32,
        capacity: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            key: own.own_key_id(),
            flags,
            capacity,
            state: Mutex::new(PoolState {
                ready: VecDeque::with_capacity(capacity),
                stopping: false,
                prepared: 0,
            }),
            changed: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let refiller = std::thread::Builder::new()
            .name("h2msg-handshake-pool".into())
            .spawn(move || refill(&for_thread, own))?;
        Ok(Self {
            shared,
            refiller: Some(refiller),
        })
    }

    /// A ready block, if any (the oldest); it leaves the pool, which starts making another.
    #[must_use]
    pub fn take(&self) -> Option<PreparedBlock> {
        let block = self.shared.lock().ready.pop_front();
        if block.is_some() {
            self.shared.changed.notify_all();
        }
        block
    }

    /// Blocks ready now.
    #[must_use]
    pub fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }

    /// Blocks made since the pool started.
    #[must_use]
    pub fn prepared(&self) -> u64 {
        self.shared.lock().prepared
    }

    /// The key the blocks are made with.
    #[must_use]
    pub fn key(&self) -> OwnKeyId {
        self.shared.key
    }

    /// The flags the blocks carry.
    #[must_use]
    pub fn flags(&self) -> u32 {
        self.shared.flags
    }

    /// Waits until the pool is full, or `timeout` passes; returns whether it is full.
    pub fn wait_full(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.ready.len() < self.shared.capacity && !state.stopping {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.ready.len() >= self.shared.capacity
    }
}

impl Drop for BlockPool {
    fn drop(&mut self) {
        let left = {
            let mut state = self.shared.lock();
            state.stopping = true;
            std::mem::take(&mut state.ready)
        };
        // Each block wipes itself as it drops.
        drop(left);
        self.shared.changed.notify_all();
        if let Some(refiller) = self.refiller.take() {
            // It stops after the block it is making, if any (a few milliseconds).
            let _ = refiller.join();
        }
    }
}

/// The refill thread: makes blocks while the pool has room, sleeps while it is full.
fn refill<K: OwnRsa>(shared: &Shared, mut own: K) {
    loop {
        {
            let mut state = shared.lock();
            while state.ready.len() >= shared.capacity && !state.stopping {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stopping {
                return;
            }
        }
        // Made without the lock: takers are never held up by the private operations.
        match PreparedBlock::prepare(
            &mut own,
            &mut getrandom::SysRng,
            WireOrder::Little,
            shared.flags,
        ) {
            Ok(block) => {
                let mut state = shared.lock();
                state.ready.push_back(block);
                state.prepared += 1;
                drop(state);
                shared.changed.notify_all();
            }
            Err(e) => {
                // A key or random source that fails here fails the one-shot path too,
                // which reports it to the caller; the pool just stays empty.
                log::warn!("handshake pool stopped: {e}");
                shared.lock().stopping = true;
                shared.changed.notify_all();
                return;
            }
        }
    }
}

/// Marks the size as not yet read from [`POOL_SIZE_ENV`].
const SIZE_UNSET: usize = usize::MAX;

static POOL_SIZE: AtomicUsize = AtomicUsize::new(SIZE_UNSET);

/// Sets the size of the pools [`link::handshake`](crate::link::handshake) starts from now
/// on; 0 turns them off. Pools already running keep their size.
pub fn set_pool_size(blocks: usize) {
    POOL_SIZE.store(blocks.min(SIZE_UNSET - 1), Ordering::Relaxed);
}

/// The size of the pools [`link::handshake`](crate::link::handshake) starts:
/// [`set_pool_size`], else [`POOL_SIZE_ENV`], else [`DEFAULT_POOL_SIZE`].
#[must_use]
pub fn pool_size() -> usize {
    match POOL_SIZE.load(Ordering::Relaxed) {
        SIZE_UNSET => {
            let size = std::env::var(POOL_SIZE_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_POOL_SIZE);
            set_pool_size(size);
            size.min(SIZE_UNSET - 1)
        }
        size => size,
    }
}

/// The id [`h2msg::RsaKeys`] and [`h2msg::OwnRsaKey`] give `key`.
#[must_use]
pub fn key_id(key: &PrivateKey) -> OwnKeyId {
    OwnKeyId::from_modulus(&key.n().to_be_bytes())
}

/// The process's pools, one per (own key, flags), with the number of handshakes asked for.
struct PoolEntry {
    key: OwnKeyId,
    flags: u32,
    handshakes: u64,
    pool: Option<Arc<BlockPool>>,
}

static POOLS: Mutex<Vec<PoolEntry>> = Mutex::new(Vec::new());

/// A prepared block for a handshake with `own` and `flags`, if the process's pool for them
/// has one ready. Each call counts a handshake: the pool starts at the second, so that a
/// process that connects once (`h2msg ping -n 1`) never spends CPU on blocks it would not
/// use; [`warm_up`] starts it at once.
#[must_use]
pub fn take_prepared(own: &PrivateKey, flags: u32) -> Option<PreparedBlock> {
    let pool = pool_entry(own, flags, 2)?;
    pool.take()
}

/// Whether the process's pool for `own` and `flags` has started. Read-only: it counts no
/// handshake and starts nothing.
#[must_use]
pub fn pool_started(own: &PrivateKey, flags: u32) -> bool {
    let key = key_id(own);
    let pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    pools
        .iter()
        .any(|e| e.key == key && e.flags == flags && e.pool.is_some())
}

/// Starts the process's pool for `own` and `flags` now (a service at start-up), unless
/// pools are off. Returns it.
pub fn warm_up(own: &PrivateKey, flags: u32) -> Option<Arc<BlockPool>> {
    pool_entry(own, flags, 0)
}

/// The pool for `own` and `flags`, counting one handshake and starting the pool once
/// `start_at` handshakes were counted.
fn pool_entry(own: &PrivateKey, flags: u32, start_at: u64) -> Option<Arc<BlockPool>> {
    let key = key_id(own);
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let at = match pools.iter().position(|e| e.key == key && e.flags == flags) {
        Some(at) => at,
        None => {
            pools.push(PoolEntry {
                key,
                flags,
                handshakes: 0,
                pool: None,
            });
            pools.len() - 1
        }
    };
    let entry = pools.get_mut(at)?;
    entry.handshakes += 1;
    let size = pool_size();
    if entry.pool.is_none() && size > 0 && entry.handshakes >= start_at {
        match BlockPool::start(own.clone(), flags, size) {
            Ok(pool) => entry.pool = Some(Arc::new(pool)),
            Err(e) => log::warn!("no handshake pool: {e}"),
        }
    }
    entry.pool.clone()
}
