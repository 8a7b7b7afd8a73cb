//! Jobs, their states, the queue they wait in (behind [`JobQueue`], so an external queue such
//! as NATS JetStream or Redis Streams can replace the in-memory one without touching the
//! handlers) and the store of recent jobs.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use kandinsky_pipeline::Request;
use serde::Serialize;
use tokio::sync::watch;

/// Where a job is. Serialized as the job API reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting; `position` jobs are ahead of it (0: it runs next).
    Queued {
        /// Jobs ahead of it.
        position: usize,
    },
    /// Running.
    Running {
        /// `loading`, `prior`, `decoder` or `decoding`.
        stage: &'static str,
        /// Steps of that stage done.
        step: usize,
        /// Steps of that stage.
        of: usize,
    },
    /// Finished with `images` images.
    Done {
        /// How many.
        images: usize,
    },
    /// Failed.
    Failed {
        /// `invalid_request` (the request's values do not fit the loaded models) or
        /// `generation_failed` (weights, devices, non-finite values…).
        code: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Cancelled by a client or by the server's shutdown.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Done { .. } | JobState::Failed { .. } | JobState::Cancelled
        )
    }

    /// The state's name, for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued { .. } => "queued",
            JobState::Running { .. } => "running",
            JobState::Done { .. } => "done",
            JobState::Failed { .. } => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// One generation asked for.
#[derive(Debug)]
pub struct Job {
    id: String,
    /// The validated request.
    pub request: Request,
    cancel: AtomicBool,
    state: watch::Sender<JobState>,
    images: OnceLock<Vec<Vec<u8>>>,
    /// The latest preview: the decoder step it shows, and the PNG.
    preview: Mutex<Option<(usize, Arc<[u8]>)>>,
}

impl Job {
    /// A new job with an unguessable id (128 random bits, hex).
    pub fn new(request: Request) -> Arc<Self> {
        Arc::new(Self {
            id: new_id(),
            request,
            cancel: AtomicBool::new(false),
            state: watch::channel(JobState::Queued { position: 0 }).0,
            images: OnceLock::new(),
            preview: Mutex::new(None),
        })
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its state now.
    pub fn state(&self) -> JobState {
        self.state.borrow().clone()
    }

    /// Follows its state (for progress streams).
    pub fn subscribe(&self) -> watch::Receiver<JobState> {
        self.state.subscribe()
    }

    /// Sets its state (a final state is never left).
    pub fn set_state(&self, state: JobState) {
        self.state.send_if_modified(|current| {
            let change = !current.is_final() && *current != state;
            if change {
                *current = state;
            }
            change
        });
    }

    /// Asks the job to stop (at its next step when running).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether it was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Stores the images of a finished job and marks it done.
    pub fn finish(&self, images: Vec<Vec<u8>>) {
        let n = images.len();
        self.preview
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let _ = self.images.set(images);
        self.set_state(JobState::Done { images: n });
    }

    /// Keeps `png` as the preview of decoder step `step` and tells the followers of the job.
    pub fn set_preview(&self, step: usize, png: Vec<u8>) {
        *self.preview.lock().unwrap_or_else(|e| e.into_inner()) = Some((step, png.into()));
        if !self.state.borrow().is_final() {
            self.state.send_modify(|_| {});
        }
    }

    /// The latest preview (the decoder step it shows, the PNG), while the job runs.
    pub fn preview(&self) -> Option<(usize, Arc<[u8]>)> {
        if !matches!(self.state(), JobState::Running { .. }) {
            return None;
        }
        self.preview
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The PNG files of a finished job.
    pub fn images(&self) -> Option<&[Vec<u8>]> {
        self.images.get().map(Vec::as_slice)
    }
}

fn new_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// 64 random bits: std's `RandomState` is seeded from the OS's randomness once per process,
/// then varied per instance; a counter makes every call distinct.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// The queue jobs wait in. `pop` is called from the worker thread and may block.
pub trait JobQueue: Send + Sync + 'static {
    /// Adds a job at the back; its position (jobs ahead of it), or the job back when full.
    fn push(&self, job: Arc<Job>) -> Result<usize, Arc<Job>>;
    /// The next job, waiting for one; `None` once the queue is closed.
    fn pop(&self) -> Option<Arc<Job>>;
    /// Jobs ahead of `id`, if it is waiting.
    fn position(&self, id: &str) -> Option<usize>;
    /// Takes a waiting job out (a cancellation).
    fn remove(&self, id: &str) -> Option<Arc<Job>>;
    /// Jobs waiting.
    fn len(&self) -> usize;
    /// Whether none waits.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Closes the queue: `pop` returns `None`, pushes are refused; the jobs still waiting are
    /// returned (to be cancelled).
    fn close(&self) -> Vec<Arc<Job>>;
}

/// A bounded first-in first-out queue in memory.
pub struct MemoryQueue {
    inner: Mutex<(VecDeque<Arc<Job>>, bool)>,
    ready: Condvar,
    capacity: usize,
}

impl MemoryQueue {
    /// A queue of at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Arc<Job>>, bool)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Updates every waiting job's position.
    fn renumber(queue: &VecDeque<Arc<Job>>) {
        for (position, job) in queue.iter().enumerate() {
            job.set_state(JobState::Queued { position });
        }
    }
}

impl JobQueue for MemoryQueue {
    fn push(&self, job: Arc<Job>) -> Result<usize, Arc<Job>> {
        let mut inner = self.lock();
        if inner.1 || inner.0.len() >= self.capacity {
            return Err(job);
        }
        let position = inner.0.len();
        job.set_state(JobState::Queued { position });
        inner.0.push_back(job);
        self.ready.notify_one();
        Ok(position)
    }

    fn pop(&self) -> Option<Arc<Job>> {
        let mut inner = self.lock();
        loop {
            if inner.1 {
                return None;
            }
            if let Some(job) = inner.0.pop_front() {
                Self::renumber(&inner.0);
                return Some(job);
            }
            inner = self.ready.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.lock().0.iter().position(|job| job.id() == id)
    }

    fn remove(&self, id: &str) -> Option<Arc<Job>> {
        let mut inner = self.lock();
        let index = inner.0.iter().position(|job| job.id() == id)?;
        let job = inner.0.remove(index);
        Self::renumber(&inner.0);
        job
    }

    fn len(&self) -> usize {
        self.lock().0.len()
    }

    fn close(&self) -> Vec<Arc<Job>> {
        let mut inner = self.lock();
        inner.1 = true;
        self.ready.notify_all();
        inner.0.drain(..).collect()
    }
}

/// The jobs by id, and the ids of the finished ones, oldest first.
#[derive(Default)]
struct Stored {
    jobs: HashMap<String, Arc<Job>>,
    finished: VecDeque<String>,
}

/// The jobs clients can ask about: every waiting and running one, and the most recent
/// finished ones (at most `keep_finished`; older ones are forgotten with their images).
pub struct JobStore {
    inner: Mutex<Stored>,
    keep_finished: usize,
}

impl JobStore {
    /// A store keeping `keep_finished` finished jobs.
    pub fn new(keep_finished: usize) -> Self {
        Self {
            inner: Mutex::new(Stored::default()),
            keep_finished,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stored> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a job.
    pub fn insert(&self, job: Arc<Job>) {
        self.lock().jobs.insert(job.id().to_string(), job);
    }

    /// Forgets a job (one that was never queued).
    pub fn remove(&self, id: &str) {
        self.lock().jobs.remove(id);
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.lock().jobs.get(id).cloned()
    }

    /// Records that `job` finished, forgetting the oldest finished jobs beyond the limit.
    pub fn finished(&self, job: &Job) {
        let mut inner = self.lock();
        inner.finished.push_back(job.id().to_string());
        while inner.finished.len() > self.keep_finished {
            if let Some(old) = inner.finished.pop_front() {
                inner.jobs.remove(&old);
            }
        }
    }

    /// Asks every job not finished to stop (the server's shutdown).
    pub fn cancel_unfinished(&self) {
        for job in self.lock().jobs.values() {
            if !job.state().is_final() {
                job.cancel();
            }
        }
    }

    /// The running job, if one is.
    pub fn running(&self) -> Option<Arc<Job>> {
        self.lock()
            .jobs
            .values()
            .find(|j| matches!(j.state(), JobState::Running { .. }))
            .cloned()
    }

    /// How many jobs are in each state.
    pub fn count_by_state(&self) -> Vec<(&'static str, usize)> {
        let inner = self.lock();
        ["queued", "running", "done", "failed", "cancelled"]
            .into_iter()
            .map(|name| {
                let n = inner
                    .jobs
                    .values()
                    .filter(|j| j.state().name() == name)
                    .count();
                (name, n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_fifo_with_positions() {
        let queue = MemoryQueue::new(2);
        let jobs: Vec<_> = (0..3)
            .map(|_| Job::new(Request::text_to_image("x")))
            .collect();
        assert_eq!(queue.push(jobs[0].clone()).unwrap(), 0);
        assert_eq!(queue.push(jobs[1].clone()).unwrap(), 1);
        assert!(queue.push(jobs[2].clone()).is_err(), "full");
        assert_eq!(queue.position(jobs[1].id()), Some(1));
        assert_eq!(queue.remove(jobs[0].id()).unwrap().id(), jobs[0].id());
        assert_eq!(jobs[1].state(), JobState::Queued { position: 0 });
        assert_eq!(queue.pop().unwrap().id(), jobs[1].id());
        assert!(queue.is_empty());
        queue.push(jobs[2].clone()).unwrap();
        assert_eq!(queue.close().len(), 1);
        assert!(queue.pop().is_none());
        assert!(queue.push(jobs[0].clone()).is_err(), "closed");
        assert_ne!(jobs[0].id(), jobs[1].id());
        assert_eq!(jobs[0].id().len(), 32);
    }

    #[test]
    fn a_final_state_is_kept() {
        let job = Job::new(Request::text_to_image("x"));
        job.set_state(JobState::Cancelled);
        job.set_state(JobState::Running {
            stage: "prior",
            step: 1,
            of: 2,
        });
        assert_eq!(job.state(), JobState::Cancelled);
    }

    #[test]
    fn the_store_forgets_the_oldest_finished() {
        let store = JobStore::new(1);
        let (a, b) = (
            Job::new(Request::text_to_image("a")),
            Job::new(Request::text_to_image("b")),
        );
        store.insert(a.clone());
        store.insert(b.clone());
        store.finished(&a);
        store.finished(&b);
        assert!(store.get(a.id()).is_none());
        assert!(store.get(b.id()).is_some());
    }
}
