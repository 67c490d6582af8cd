//! The agent's timing and trust rules as a state machine without I/O.
//!
//! [`Rules`] owns everything the agent decides by the clock: when the control plane was
//! last heard from (and so when the node fails closed), whether a rejected state asks for
//! a resync and when the rate limit lets one out, when the interface is next compared
//! with the applied state, and when a silent stream is given up. Every method takes the
//! time as an argument ([`Now`]) and returns what to do; the agent's async loop only
//! sleeps until [`Rules::next_deadline`] and executes the [`Action`]s that
//! [`Rules::poll`] hands out. So the rules are tested with synthetic time, without a
//! network namespace (the shape of Firezone's gateway event loop).
//!
//! Two clocks are involved on purpose. The fail-closed deadline counts from the last
//! contact in wall time, because that time is persisted and must survive a restart (a
//! restart must not extend the deadline). Stream silence, drift checks and the resync
//! rate limit are intervals on the monotonic clock.

use std::time::{Duration, Instant};

use clawn_proto::sign::{Rejection, Verified};
use clawn_proto::time::UnixMillis;

/// The control plane pings every 15 s; silence for this long means the stream is dead.
pub const STREAM_SILENCE: Duration = Duration::from_secs(45);
/// How often the interface is compared with the applied state while connected.
pub const DRIFT_CHECK: Duration = Duration::from_secs(60);
/// At most one resync request per this interval.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);
/// The contact time is persisted at most this often while in contact, so a restart
/// extends the fail-closed deadline by at most this much.
pub const CONTACT_SAVE_INTERVAL_MS: i64 = 10_000;
/// After a failed attempt to remove all peers, the next attempt waits this long.
pub const FAIL_CLOSED_RETRY: Duration = Duration::from_secs(5);

/// A moment as the rules see it: wall time for what survives a restart, monotonic time
/// for intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix milliseconds.
    pub wall: UnixMillis,
    /// The monotonic clock.
    pub mono: Instant,
}

impl Now {
    /// The current time on both clocks.
    pub fn current() -> Self {
        Self {
            wall: clawn_proto::time::now_millis(),
            mono: Instant::now(),
        }
    }
}

/// Something the agent must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing verified for longer than the offline grace: remove every peer, then call
    /// [`Rules::failed_closed`].
    FailClosed,
    /// Send a resync request on the stream.
    RequestResync,
    /// Compare the interface and the firewall with the applied state and repair them.
    CheckDrift,
    /// The stream has been silent too long: drop it and reconnect.
    DropStream,
}

/// What to do with a desired state the verifier rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRejected {
    /// Send a resync request now.
    RequestResync,
    /// Answer nothing: a replay, a foreign node's state, or a resync the rate limit holds
    /// back (it goes out from [`Rules::poll`] as soon as allowed).
    Ignore,
}

/// The agent's timing and trust state.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `offline_grace_secs` of the applied policy, as ms (0 = never fail closed).
    grace_ms: i64,
    /// The last verified contact (a verified state or the stream's keep-alive).
    last_contact: UnixMillis,
    /// The last contact time handed out for persisting.
    contact_saved: UnixMillis,
    /// The version applied (the floor for every later message).
    applied: Option<u64>,
    /// All peers were removed because the control plane was away too long.
    failed_closed: bool,
    /// A failed fail-closed attempt is retried no earlier than this.
    fail_closed_retry: Option<Instant>,
    /// While connected: when the stream counts as dead.
    silence_deadline: Option<Instant>,
    /// While connected: the next drift check.
    next_drift: Option<Instant>,
    last_resync: Option<Instant>,
    /// A resync the rate limit held back.
    resync_pending: bool,
}

impl Rules {
    /// Rules for a node last in contact at `last_contact` (persisted: a restart passes the
    /// saved time, so it does not extend the deadline) with `offline_grace_secs`.
    pub fn new(last_contact: UnixMillis, offline_grace_secs: u64) -> Self {
        let mut r = Self {
            grace_ms: 0,
            last_contact,
            contact_saved: last_contact,
            applied: None,
            failed_closed: false,
            fail_closed_retry: None,
            silence_deadline: None,
            next_drift: None,
            last_resync: None,
            resync_pending: false,
        };
        r.set_offline_grace(offline_grace_secs);
        r
    }

    /// Takes the grace of a newly applied policy.
    pub fn set_offline_grace(&mut self, secs: u64) {
        self.grace_ms = i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000);
    }

    /// The last verified contact.
    pub fn last_contact(&self) -> UnixMillis {
        self.last_contact
    }

    /// The version applied, the floor for the verifier.
    pub fn applied(&self) -> Option<u64> {
        self.applied
    }

    /// Records a version as applied without a contact (the saved snapshot at start).
    pub fn restore(&mut self, version: u64) {
        self.applied = Some(version);
    }

    /// Whether the node has removed all peers for lack of contact.
    pub fn is_failed_closed(&self) -> bool {
        self.failed_closed
    }

    /// Whether the control plane has been away longer than the grace.
    pub fn offline_too_long(&self, now: Now) -> bool {
        self.grace_ms > 0 && now.wall.saturating_sub(self.last_contact) > self.grace_ms
    }

    /// A verified contact (a verified state or the authenticated stream's keep-alive).
    /// Returns the time to persist when the saved one is more than
    /// [`CONTACT_SAVE_INTERVAL_MS`] old.
    pub fn on_contact(&mut self, now: Now) -> Option<UnixMillis> {
        self.last_contact = now.wall;
        if now.wall - self.contact_saved > CONTACT_SAVE_INTERVAL_MS {
            self.contact_saved = now.wall;
            Some(now.wall)
        } else {
            None
        }
    }

    /// The stream is up: start the silence and drift clocks.
    pub fn on_connected(&mut self, now: Now) {
        self.silence_deadline = Some(now.mono + STREAM_SILENCE);
        self.next_drift = Some(now.mono + DRIFT_CHECK);
    }

    /// The stream is gone: no silence or drift clock until the next connect.
    pub fn on_disconnected(&mut self) {
        self.silence_deadline = None;
        self.next_drift = None;
    }

    /// Any message arrived on the stream (verified or not): it is alive.
    pub fn on_message(&mut self, now: Now) {
        if self.silence_deadline.is_some() {
            self.silence_deadline = Some(now.mono + STREAM_SILENCE);
        }
    }

    /// Checks a verified state against the rules before it is applied: while failed
    /// closed the interface has no peers, so only a full snapshot can restore it and a
    /// delta is a gap.
    pub fn admit(&self, v: &Verified) -> Result<(), Rejection> {
        match v {
            Verified::Delta(_) if self.failed_closed => Err(Rejection::Gap {
                from: self.applied.unwrap_or_default(),
                applied: None,
            }),
            _ => Ok(()),
        }
    }

    /// A verified state was applied and saved. Returns whether the node had failed
    /// closed (it serves peers again now), and the contact time to persist, if due.
    pub fn on_applied(
        &mut self,
        version: u64,
        snapshot: bool,
        now: Now,
    ) -> (bool, Option<UnixMillis>) {
        let was_closed = std::mem::take(&mut self.failed_closed);
        self.fail_closed_retry = None;
        if snapshot {
            self.resync_pending = false;
        }
        self.applied = Some(version);
        (was_closed, self.on_contact(now))
    }

    /// The verifier rejected a state: a gap, a bad signature or a malformed message asks
    /// for a snapshot (rate-limited); a replay or a foreign node's state is ignored.
    pub fn on_rejected(&mut self, r: &Rejection, now: Now) -> OnRejected {
        if r.wants_resync() {
            self.resync(now)
        } else {
            OnRejected::Ignore
        }
    }

    /// Applying a verified state failed: ask for a snapshot (rate-limited).
    pub fn on_apply_failed(&mut self, now: Now) -> OnRejected {
        self.resync(now)
    }

    fn resync(&mut self, now: Now) -> OnRejected {
        if self.silence_deadline.is_none() || !self.resync_allowed(now) {
            self.resync_pending = true;
            return OnRejected::Ignore;
        }
        self.last_resync = Some(now.mono);
        self.resync_pending = false;
        OnRejected::RequestResync
    }

    fn resync_allowed(&self, now: Now) -> bool {
        self.last_resync
            .is_none_or(|t| now.mono.saturating_duration_since(t) >= RESYNC_INTERVAL)
    }

    /// Removing all peers succeeded.
    pub fn failed_closed(&mut self) {
        self.failed_closed = true;
        self.fail_closed_retry = None;
    }

    /// The next action due at `now`, if any; call until it returns `None`. Each action is
    /// handed out once per occasion (a drift check is rescheduled, a pending resync is
    /// marked sent, a fail-closed attempt waits [`FAIL_CLOSED_RETRY`] for its result).
    pub fn poll(&mut self, now: Now) -> Option<Action> {
        if self.silence_deadline.is_some_and(|d| now.mono >= d) {
            self.on_disconnected();
            return Some(Action::DropStream);
        }
        if !self.failed_closed
            && self.offline_too_long(now)
            && self.fail_closed_retry.is_none_or(|t| now.mono >= t)
        {
            self.fail_closed_retry = Some(now.mono + FAIL_CLOSED_RETRY);
            return Some(Action::FailClosed);
        }
        if self.silence_deadline.is_some() && self.resync_pending && self.resync_allowed(now) {
            self.last_resync = Some(now.mono);
            self.resync_pending = false;
            return Some(Action::RequestResync);
        }
        if let Some(d) = self.next_drift
            && now.mono >= d
        {
            self.next_drift = Some(now.mono + DRIFT_CHECK);
            if self.applied.is_some() && !self.failed_closed {
                return Some(Action::CheckDrift);
            }
        }
        None
    }

    /// When [`Rules::poll`] next has something to do (monotonic), if ever.
    pub fn next_deadline(&self, now: Now) -> Option<Instant> {
        let fail_closed = (!self.failed_closed && self.grace_ms > 0).then(|| {
            // The first wall millisecond past the grace, on the monotonic clock.
            let due_wall = self.last_contact.saturating_add(self.grace_ms + 1);
            let wait = u64::try_from(due_wall.saturating_sub(now.wall)).unwrap_or(0);
            let at = now.mono + Duration::from_millis(wait);
            self.fail_closed_retry.map_or(at, |r| at.max(r))
        });
        let resync = (self.silence_deadline.is_some() && self.resync_pending)
            .then(|| self.last_resync.map_or(now.mono, |t| t + RESYNC_INTERVAL));
        [self.silence_deadline, self.next_drift, fail_closed, resync]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use clawn_proto::node::Delta;
    use uuid::Uuid;

    use super::*;

    /// A synthetic clock: `ms` after a fixed origin on both clocks.
    struct Clock {
        wall0: UnixMillis,
        mono0: Instant,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                wall0: 1_700_000_000_000,
                mono0: Instant::now(),
            }
        }
        fn at(&self, ms: i64) -> Now {
            Now {
                wall: self.wall0 + ms,
                mono: self.mono0 + Duration::from_millis(u64::try_from(ms).expect("ms >= 0")),
            }
        }
    }

    fn delta(from: u64, to: u64) -> Verified {
        Verified::Delta(Delta {
            node_id: Uuid::nil(),
            from_version: from,
            to_version: to,
            issued_at: 0,
            remove: vec![],
            add: vec![],
            update: vec![],
        })
    }

    /// Every action due at `now`.
    fn drain(r: &mut Rules, now: Now) -> Vec<Action> {
        std::iter::from_fn(|| r.poll(now)).collect()
    }

    #[test]
    fn fails_closed_exactly_after_the_grace_from_the_last_contact() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 30);
        r.restore(1);
        assert_eq!(r.on_contact(c.at(4_000)), None, "saved 4 s ago: not yet");
        assert_eq!(drain(&mut r, c.at(34_000)), vec![]);
        assert_eq!(
            r.next_deadline(c.at(34_000)),
            Some(c.at(34_001).mono),
            "the timer wakes on the first millisecond past the grace"
        );
        assert_eq!(drain(&mut r, c.at(34_001)), vec![Action::FailClosed]);
        // Handed out once; the agent reports success.
        assert_eq!(drain(&mut r, c.at(34_002)), vec![]);
        r.failed_closed();
        assert!(r.is_failed_closed());
        assert_eq!(drain(&mut r, c.at(100_000)), vec![]);
        assert_eq!(r.next_deadline(c.at(100_000)), None);
    }

    #[test]
    fn a_restart_does_not_reset_the_grace() {
        let c = Clock::new();
        let mut before = Rules::new(c.at(0).wall, 30);
        // In contact every second; the time is persisted only every 10 s.
        let mut saved = c.at(0).wall;
        for s in 1..=25 {
            if let Some(t) = before.on_contact(c.at(s * 1000)) {
                saved = t;
            }
        }
        assert_eq!(saved, c.at(22_000).wall, "saved at 11 s and 22 s");
        // The process dies at 25 s and restarts at 50 s with the persisted time: it fails
        // closed 30 s after that time, not 30 s after the restart.
        let mut after = Rules::new(saved, 30);
        assert!(!after.offline_too_long(c.at(52_000)));
        assert_eq!(drain(&mut after, c.at(52_000)), vec![]);
        assert_eq!(drain(&mut after, c.at(52_001)), vec![Action::FailClosed]);
        // Already past the grace at start: the very first poll fails closed.
        let mut late = Rules::new(saved, 30);
        assert!(late.offline_too_long(c.at(90_000)));
        assert_eq!(drain(&mut late, c.at(90_000)), vec![Action::FailClosed]);
    }

    #[test]
    fn zero_grace_never_fails_closed_and_a_new_policy_applies() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 0);
        assert_eq!(drain(&mut r, c.at(10_000_000)), vec![]);
        assert_eq!(r.next_deadline(c.at(10_000_000)), None);
        r.set_offline_grace(5);
        assert_eq!(
            drain(&mut r, c.at(10_000_000)),
            vec![Action::FailClosed],
            "a shorter grace from a new policy counts from the same contact"
        );
    }

    #[test]
    fn a_failed_fail_close_is_retried_after_a_pause() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 1);
        assert_eq!(drain(&mut r, c.at(1_001)), vec![Action::FailClosed]);
        // The removal failed: not failed closed, and no busy loop.
        assert!(!r.is_failed_closed());
        assert_eq!(drain(&mut r, c.at(6_000)), vec![]);
        assert_eq!(r.next_deadline(c.at(6_000)), Some(c.at(6_001).mono));
        assert_eq!(drain(&mut r, c.at(6_001)), vec![Action::FailClosed]);
    }

    #[test]
    fn a_verified_state_restores_service_and_counts_as_contact() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 30);
        assert_eq!(drain(&mut r, c.at(31_000)), vec![Action::FailClosed]);
        r.failed_closed();
        // While failed closed a delta cannot restore the peers: it is a gap.
        assert!(matches!(r.admit(&delta(1, 2)), Err(Rejection::Gap { .. })));
        let (was_closed, save) = r.on_applied(3, true, c.at(40_000));
        assert!(was_closed);
        assert_eq!(save, Some(c.at(40_000).wall));
        assert_eq!(r.applied(), Some(3));
        assert!(!r.is_failed_closed());
        assert_eq!(r.admit(&delta(3, 4)), Ok(()));
        assert_eq!(drain(&mut r, c.at(70_000)), vec![]);
        assert_eq!(drain(&mut r, c.at(70_001)), vec![Action::FailClosed]);
    }

    #[test]
    fn a_gap_asks_for_a_resync_and_a_replay_or_foreign_state_is_ignored() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 0);
        r.on_connected(c.at(0));
        let stale = Rejection::Stale { got: 1, applied: 5 };
        let foreign = Rejection::WrongNode {
            got: Uuid::new_v4(),
            expected: Uuid::nil(),
        };
        assert_eq!(r.on_rejected(&stale, c.at(100)), OnRejected::Ignore);
        assert_eq!(r.on_rejected(&foreign, c.at(100)), OnRejected::Ignore);
        assert_eq!(drain(&mut r, c.at(100)), vec![], "nothing pending either");
        let gap = Rejection::Gap {
            from: 7,
            applied: Some(5),
        };
        assert_eq!(r.on_rejected(&gap, c.at(200)), OnRejected::RequestResync);
        // Rejected messages are not contact.
        assert_eq!(r.last_contact(), c.at(0).wall);
    }

    #[test]
    fn resync_requests_are_rate_limited_and_the_held_one_goes_out_later() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 0);
        r.on_connected(c.at(0));
        assert_eq!(
            r.on_rejected(&Rejection::BadSignature, c.at(1_000)),
            OnRejected::RequestResync
        );
        assert_eq!(r.on_apply_failed(c.at(2_000)), OnRejected::Ignore);
        assert_eq!(r.next_deadline(c.at(2_000)), Some(c.at(6_000).mono));
        assert_eq!(drain(&mut r, c.at(5_999)), vec![]);
        assert_eq!(drain(&mut r, c.at(6_000)), vec![Action::RequestResync]);
        assert_eq!(drain(&mut r, c.at(20_000)), vec![], "sent once");
        assert_eq!(r.on_apply_failed(c.at(20_000)), OnRejected::RequestResync);
        // A snapshot applied while one is held back makes it moot.
        assert_eq!(r.on_apply_failed(c.at(21_000)), OnRejected::Ignore);
        r.on_applied(9, true, c.at(21_500));
        assert_eq!(drain(&mut r, c.at(30_000)), vec![]);
    }

    #[test]
    fn no_resync_is_sent_without_a_stream() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 0);
        assert_eq!(r.on_apply_failed(c.at(0)), OnRejected::Ignore);
        assert_eq!(drain(&mut r, c.at(10_000)), vec![]);
        // It goes out once connected.
        r.on_connected(c.at(10_000));
        assert_eq!(drain(&mut r, c.at(10_000)), vec![Action::RequestResync]);
    }

    #[test]
    fn drift_is_checked_every_minute_while_connected_with_a_state() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 0);
        r.on_connected(c.at(0));
        // The control plane's keep-alive arrives every 15 s.
        let alive = |r: &mut Rules, until: i64| {
            for t in (15_000..=until).step_by(15_000) {
                r.on_message(c.at(t));
            }
            drain(r, c.at(until))
        };
        assert_eq!(
            alive(&mut r, 60_000),
            vec![],
            "nothing applied yet: nothing to compare"
        );
        r.on_applied(1, true, c.at(61_000));
        assert_eq!(alive(&mut r, 119_999), vec![]);
        assert_eq!(r.next_deadline(c.at(119_999)), Some(c.at(120_000).mono));
        assert_eq!(alive(&mut r, 120_000), vec![Action::CheckDrift]);
        assert_eq!(alive(&mut r, 179_999), vec![]);
        assert_eq!(alive(&mut r, 180_000), vec![Action::CheckDrift]);
        // Not while disconnected.
        r.on_disconnected();
        assert_eq!(drain(&mut r, c.at(1_000_000)), vec![]);
        assert_eq!(r.next_deadline(c.at(1_000_000)), None);
    }

    #[test]
    fn a_silent_stream_is_dropped() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 0);
        r.on_connected(c.at(0));
        r.on_message(c.at(40_000));
        assert_eq!(drain(&mut r, c.at(84_999)), vec![]);
        assert_eq!(drain(&mut r, c.at(85_000)), vec![Action::DropStream]);
        // Dropped once; the clocks stop until the next connect.
        assert_eq!(r.next_deadline(c.at(85_000)), None);
        r.on_message(c.at(86_000));
        assert_eq!(r.next_deadline(c.at(86_000)), None);
    }

    #[test]
    fn the_earliest_deadline_wins() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 20);
        r.on_connected(c.at(0));
        assert_eq!(r.next_deadline(c.at(0)), Some(c.at(20_001).mono));
        r.on_contact(c.at(30_000));
        assert_eq!(
            r.next_deadline(c.at(30_000)),
            Some(c.at(45_000).mono),
            "silence first"
        );
    }
}
