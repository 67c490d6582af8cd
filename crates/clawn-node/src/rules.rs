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
/// While the lease is out, the siblings are asked again this often.
pub const SIBLING_RECHECK: Duration = Duration::from_secs(5);
/// Lease renewals go out every third of the lease, but at least this far apart.
pub const LEASE_RENEW_MIN: Duration = Duration::from_secs(1);
/// Renewal interval before the first grant told the lease length.
pub const LEASE_RENEW_DEFAULT: Duration = Duration::from_secs(5);

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
    /// Send a lease renewal with this sequence number on the stream.
    RequestLease(u64),
    /// The lease ran out: ask the siblings whether theirs still run, then call
    /// [`Rules::on_siblings`].
    CheckSiblings,
}

/// The node's lease (partition safety, docs/architecture.md §12): granted by the control
/// plane per request, counted from when the request was *sent*.
#[derive(Debug, Clone, Default)]
struct Lease {
    /// The last grant's length, ms (0 = none granted yet).
    ms: u64,
    /// When the lease ends (monotonic), once one was granted.
    expiry: Option<Instant>,
    /// Requests in flight: sequence number and when it went out.
    sent: std::collections::VecDeque<(u64, Instant)>,
    next_seq: u64,
    /// While connected: the next renewal.
    next_request: Option<Instant>,
    /// The region's other nodes, from the last grant.
    siblings: Vec<String>,
    /// While the lease is out: the next time the siblings are asked.
    next_sibling_check: Option<Instant>,
    /// A sibling's lease runs while ours ran out: this node is cut off; fail closed.
    partitioned: bool,
    /// Whether renewals are sent at all.
    enabled: bool,
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
    lease: Lease,
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
            lease: Lease::default(),
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

    /// The stream is up: start the silence and drift clocks, and renew the lease now.
    pub fn on_connected(&mut self, now: Now) {
        self.silence_deadline = Some(now.mono + STREAM_SILENCE);
        self.next_drift = Some(now.mono + DRIFT_CHECK);
        self.lease.next_request = self.lease.enabled.then_some(now.mono);
    }

    /// The stream is gone: no silence or drift clock or renewals until the next connect
    /// (requests in flight can no longer be answered).
    pub fn on_disconnected(&mut self) {
        self.silence_deadline = None;
        self.next_drift = None;
        self.lease.next_request = None;
        self.lease.sent.clear();
    }

    /// A lease grant for request `seq`: the lease runs until that request's send time +
    /// `lease_ms`. Returns the new expiry, if the grant matched a request in flight.
    pub fn on_lease(
        &mut self,
        seq: u64,
        lease_ms: u64,
        siblings: Vec<String>,
        _now: Now,
    ) -> Option<Instant> {
        let pos = self.lease.sent.iter().position(|(s, _)| *s == seq)?;
        let (_, sent_at) = self.lease.sent[pos];
        // Older requests can only give an earlier expiry: forget them.
        self.lease.sent.drain(..=pos);
        let expiry = sent_at + Duration::from_millis(lease_ms);
        self.lease.expiry = Some(self.lease.expiry.map_or(expiry, |e| e.max(expiry)));
        self.lease.ms = lease_ms;
        // Renew a third of the way into this lease (the first request went out before
        // the length was known).
        let renew = sent_at + Duration::from_millis(lease_ms / 3).max(LEASE_RENEW_MIN);
        if let Some(next) = self.lease.next_request.as_mut() {
            *next = (*next).min(renew);
        }
        self.lease.siblings = siblings;
        self.lease.partitioned = false;
        self.lease.next_sibling_check = None;
        self.lease.expiry
    }

    /// How long the lease still runs (0 when none runs).
    pub fn lease_remaining(&self, now: Now) -> Duration {
        self.lease
            .expiry
            .map_or(Duration::ZERO, |e| e.saturating_duration_since(now.mono))
    }

    /// The siblings to ask on [`Action::CheckSiblings`].
    pub fn siblings(&self) -> &[String] {
        &self.lease.siblings
    }

    /// What the siblings answered: `live` when at least one still holds a lease. Then the
    /// control plane is up and this node is the one cut off: it fails closed (the next
    /// [`Rules::poll`] says so). Otherwise the control plane itself is down (or every
    /// sibling is unreachable too): peers stay until the offline grace.
    pub fn on_siblings(&mut self, live: bool, now: Now) {
        // A grant that arrived while the siblings were asked renewed the lease: moot.
        if live && self.lease_out(now) {
            self.lease.partitioned = true;
        }
    }

    /// Renew a lease on every connection from now on (the agent does; a control plane
    /// without leases answers nothing and the node keeps only the offline grace).
    pub fn enable_leases(&mut self) {
        self.lease.enabled = true;
    }

    /// Whether this node decided it is cut off from a working control plane.
    pub fn is_partitioned(&self) -> bool {
        self.lease.partitioned
    }

    fn lease_out(&self, now: Now) -> bool {
        self.lease.ms > 0 && self.lease.expiry.is_some_and(|e| now.mono >= e)
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
        self.lease.partitioned = false;
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
            && (self.offline_too_long(now) || self.lease.partitioned)
            && self.fail_closed_retry.is_none_or(|t| now.mono >= t)
        {
            self.fail_closed_retry = Some(now.mono + FAIL_CLOSED_RETRY);
            return Some(Action::FailClosed);
        }
        if let Some(at) = self.lease.next_request
            && now.mono >= at
        {
            let every = if self.lease.ms == 0 {
                LEASE_RENEW_DEFAULT
            } else {
                Duration::from_millis(self.lease.ms / 3).max(LEASE_RENEW_MIN)
            };
            self.lease.next_request = Some(now.mono + every);
            let seq = self.lease.next_seq;
            self.lease.next_seq += 1;
            self.lease.sent.push_back((seq, now.mono));
            // Unanswered requests pile up only while the stream is stuck; keep a few.
            while self.lease.sent.len() > 64 {
                self.lease.sent.pop_front();
            }
            return Some(Action::RequestLease(seq));
        }
        if !self.failed_closed
            && !self.lease.partitioned
            && self.lease_out(now)
            && !self.lease.siblings.is_empty()
            && self.lease.next_sibling_check.is_none_or(|t| now.mono >= t)
        {
            self.lease.next_sibling_check = Some(now.mono + SIBLING_RECHECK);
            return Some(Action::CheckSiblings);
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
        let partitioned = (!self.failed_closed && self.lease.partitioned)
            .then(|| self.fail_closed_retry.unwrap_or(now.mono));
        let siblings = (!self.failed_closed
            && !self.lease.partitioned
            && self.lease.ms > 0
            && !self.lease.siblings.is_empty())
        .then_some(self.lease.expiry)
        .flatten()
        .map(|e| self.lease.next_sibling_check.map_or(e, |c| c.max(e)));
        [
            self.silence_deadline,
            self.next_drift,
            fail_closed,
            resync,
            self.lease.next_request,
            partitioned,
            siblings,
        ]
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

    fn lease_request(r: &mut Rules, now: Now) -> u64 {
        loop {
            match r.poll(now) {
                Some(Action::RequestLease(seq)) => return seq,
                Some(_) => {}
                None => panic!("no lease request due"),
            }
        }
    }

    #[test]
    fn the_lease_counts_from_the_request_and_a_cut_off_node_fails_closed() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 86_400);
        r.enable_leases();
        r.on_connected(c.at(0));
        let seq = lease_request(&mut r, c.at(0));
        // The grant arrives 400 ms later; the lease still counts from the request.
        let siblings = vec!["192.0.2.12:51820".to_string()];
        let expiry = r.on_lease(seq, 10_000, siblings.clone(), c.at(400));
        assert_eq!(expiry, Some(c.at(10_000).mono));
        assert_eq!(r.lease_remaining(c.at(400)), Duration::from_millis(9_600));
        // A grant for an unknown request changes nothing.
        assert_eq!(r.on_lease(seq + 7, 60_000, siblings, c.at(500)), None);
        // Renewals go out every third of the lease, from the request the grant answered.
        assert_eq!(r.poll(c.at(3_332)), None);
        assert!(matches!(r.poll(c.at(3_333)), Some(Action::RequestLease(_))));
        assert_eq!(r.poll(c.at(6_665)), None);
        assert!(matches!(r.poll(c.at(6_666)), Some(Action::RequestLease(_))));
        // Cut off: the stream dies, no grant comes back.
        r.on_disconnected();
        assert_eq!(r.poll(c.at(9_999)), None);
        assert_eq!(r.next_deadline(c.at(9_999)), Some(c.at(10_000).mono));
        assert_eq!(r.poll(c.at(10_000)), Some(Action::CheckSiblings));
        // A sibling still holds its lease: the control plane is up, this node fails closed.
        r.on_siblings(true, c.at(10_050));
        assert!(r.is_partitioned());
        assert_eq!(r.poll(c.at(10_050)), Some(Action::FailClosed));
        r.failed_closed();
        assert_eq!(r.poll(c.at(20_000)), None);
        // Back in contact: the snapshot restores it.
        r.on_connected(c.at(30_000));
        let _ = r.on_applied(9, true, c.at(30_100));
        assert!(!r.is_partitioned() && !r.is_failed_closed());
    }

    #[test]
    fn a_control_plane_outage_keeps_the_peers_until_the_grace() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 3_600);
        r.enable_leases();
        r.on_connected(c.at(0));
        let seq = lease_request(&mut r, c.at(0));
        r.on_lease(seq, 5_000, vec!["192.0.2.12:51820".into()], c.at(10));
        r.on_disconnected();
        assert_eq!(r.poll(c.at(5_000)), Some(Action::CheckSiblings));
        // No sibling holds a lease either: the control plane is down; keep serving.
        r.on_siblings(false, c.at(5_100));
        assert!(!r.is_partitioned());
        assert_eq!(r.poll(c.at(5_100)), None);
        // Asked again every SIBLING_RECHECK.
        assert_eq!(r.next_deadline(c.at(5_100)), Some(c.at(10_000).mono));
        assert_eq!(r.poll(c.at(10_000)), Some(Action::CheckSiblings));
        r.on_siblings(false, c.at(10_100));
        // Only the offline grace ends it.
        assert_eq!(r.poll(c.at(3_600_001)), Some(Action::FailClosed));
    }

    #[test]
    fn a_node_without_siblings_or_leases_keeps_todays_rules() {
        let c = Clock::new();
        let mut r = Rules::new(c.at(0).wall, 3_600);
        r.enable_leases();
        r.on_connected(c.at(0));
        let seq = lease_request(&mut r, c.at(0));
        // A single-node region: nobody can take over its devices; nothing to ask.
        r.on_lease(seq, 5_000, Vec::new(), c.at(10));
        r.on_disconnected();
        assert_eq!(r.poll(c.at(60_000)), None);
        // Leases not enabled: no renewal is ever asked for.
        let mut plain = Rules::new(c.at(0).wall, 3_600);
        plain.on_connected(c.at(0));
        assert_eq!(plain.poll(c.at(0)), None);
        // A late grant after a sibling answer "live" would be moot: renewed, not cut off.
        let mut r = Rules::new(c.at(0).wall, 3_600);
        r.enable_leases();
        r.on_connected(c.at(0));
        let seq = lease_request(&mut r, c.at(0));
        r.on_lease(seq, 5_000, vec!["x:1".into()], c.at(10));
        let seq2 = lease_request(&mut r, c.at(5_000));
        assert_eq!(r.poll(c.at(5_000)), Some(Action::CheckSiblings));
        r.on_lease(seq2, 5_000, vec!["x:1".into()], c.at(5_010));
        r.on_siblings(true, c.at(5_020));
        assert!(!r.is_partitioned());
    }
}
