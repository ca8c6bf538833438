//! How the guard behaves, and what it reports of a pass.

use vigil_core::release::{NotificationEvent, ReleaseState};
use vigil_core::Verdict;

/// Which channel gets which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub channel: String,
    pub events: Vec<NotificationEvent>,
}

/// How the guard behaves.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Base of the links in notifications (`{public_url}/releases/{id}`).
    pub public_url: String,
    pub routes: Vec<Route>,
    /// A step is judged at the latest this long after its time, complete or not.
    pub grace_seconds: i64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            public_url: "http://127.0.0.1:7070".to_string(),
            routes: Vec::new(),
            grace_seconds: 10,
        }
    }
}

/// What the guard did with one release in a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub release_id: String,
    pub at: i64,
    pub verdict: Verdict,
    /// The state change it made, if any.
    pub moved_to: Option<ReleaseState>,
}
