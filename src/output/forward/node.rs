//! One out_forward `<server>`: its health state machine, its address, and its idle connections.
//!
//! Owns when a server is *available*: it goes down on a failed send, connect, handshake or ack
//! (reported by the sender), on a failed transport heartbeat, or when the [`PhiDetector`] or
//! `hard_timeout` says its heartbeats stopped; it comes back after `recover_wait` worth of
//! consecutive successful heartbeats (with `heartbeat_type none`: once `recover_wait` has
//! passed). Each change is logged once, when it happens, never per chunk. It also caches DNS
//! answers (`expire_dns_cache`, `dns_round_robin`) and keeps idle keepalive connections. It
//! must not choose between servers (that is [`super::balance`]) or speak the protocol (that is
//! [`super::connection`]).

use super::config::{HealthParams, HeartbeatType, ServerConfig};
use super::connection::Connection;
use super::phi::PhiDetector;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

impl HealthParams {
    /// Heartbeat intervals a down server must answer through before it is used again
    /// (Fluentd: `recover_wait / heartbeat_interval`), at least one. It comes back with the
    /// heartbeat *after* that many, so that `recover_wait` has passed since the first one.
    pub fn recover_samples(&self) -> u32 {
        let interval = self.heartbeat_interval.as_secs_f64().max(0.001);
        (self.recover_wait.as_secs_f64() / interval).ceil().max(1.0) as u32
    }
}

/// A change of a server's availability, to be logged once.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthChange {
    Down { reason: String },
    Up,
}

#[derive(Debug, Clone, PartialEq)]
enum Availability {
    Up,
    Down {
        since: Instant,
        reason: String,
        /// Consecutive successful heartbeats since the last failure.
        successes: u32,
    },
}

/// The availability state machine of one server. Pure: the caller passes the time in.
#[derive(Debug, Clone)]
pub struct NodeHealth {
    params: HealthParams,
    state: Availability,
    detector: PhiDetector,
}

impl NodeHealth {
    /// A new server starts available (as in Fluentd); heartbeats correct that quickly.
    pub fn new(params: HealthParams, now: Instant) -> Self {
        let detector = PhiDetector::new(params.heartbeat_interval, params.hard_timeout, now);
        NodeHealth {
            params,
            state: Availability::Up,
            detector,
        }
    }

    pub fn available(&self) -> bool {
        self.state == Availability::Up
    }

    /// The phi accrual detector's suspicion now (0 right after a heartbeat).
    pub fn phi(&self, now: Instant) -> f64 {
        self.detector.phi(now)
    }

    /// Why the server is down (None when up).
    pub fn down_reason(&self) -> Option<&str> {
        match &self.state {
            Availability::Up => None,
            Availability::Down { reason, .. } => Some(reason),
        }
    }

    /// A heartbeat was answered.
    pub fn heartbeat_ok(&mut self, now: Instant) -> Option<HealthChange> {
        self.detector.heartbeat(now);
        let needed = self.params.recover_samples();
        match &mut self.state {
            Availability::Up => None,
            Availability::Down { successes, .. } => {
                *successes += 1;
                if *successes > needed {
                    self.state = Availability::Up;
                    self.detector.reset(now);
                    Some(HealthChange::Up)
                } else {
                    None
                }
            }
        }
    }

    /// A heartbeat went unanswered without a definite error (a lost UDP datagram): only the
    /// phi detector judges an available server; a recovering one starts counting again.
    pub fn heartbeat_missed(&mut self) {
        if let Availability::Down { successes, .. } = &mut self.state {
            *successes = 0;
        }
    }

    /// A heartbeat failed outright (connection refused, TLS or handshake failure, timeout),
    /// or a send failed: the server is down.
    pub fn failed(&mut self, now: Instant, reason: impl Into<String>) -> Option<HealthChange> {
        match &mut self.state {
            Availability::Up => {
                let reason = reason.into();
                self.state = Availability::Down {
                    since: now,
                    reason: reason.clone(),
                    successes: 0,
                };
                self.detector.reset(now);
                Some(HealthChange::Down { reason })
            }
            Availability::Down { successes, .. } => {
                *successes = 0;
                None
            }
        }
    }

    /// Periodic check: phi and `hard_timeout` for an available server with heartbeats; with
    /// `heartbeat_type none`, a down server is given another chance after `recover_wait`.
    pub fn tick(&mut self, now: Instant) -> Option<HealthChange> {
        match (&self.state, self.params.heartbeat_type) {
            (Availability::Up, HeartbeatType::None) => None,
            (Availability::Up, _) => {
                if self.detector.hard_timed_out(now) {
                    let secs = now
                        .saturating_duration_since(self.detector.last_heartbeat())
                        .as_secs_f64();
                    return self.failed(now, format!("no heartbeat for {secs:.1}s (hard_timeout)"));
                }
                if self.params.phi_failure_detector {
                    let phi = self.detector.phi(now);
                    if phi > self.params.phi_threshold {
                        return self.failed(
                            now,
                            format!(
                                "heartbeats stopped (phi {phi:.1} > phi_threshold {})",
                                self.params.phi_threshold
                            ),
                        );
                    }
                }
                None
            }
            (Availability::Down { since, .. }, HeartbeatType::None) => {
                if now.saturating_duration_since(*since) >= self.params.recover_wait {
                    self.state = Availability::Up;
                    self.detector.reset(now);
                    Some(HealthChange::Up)
                } else {
                    None
                }
            }
            (Availability::Down { .. }, _) => None,
        }
    }
}

/// A cached DNS answer.
struct Resolved {
    addrs: Vec<SocketAddr>,
    at: Instant,
}

/// One `<server>` at run time.
pub struct ServerNode {
    pub config: ServerConfig,
    /// `name`, else `host:port`, for logs.
    pub label: String,
    health: Mutex<NodeHealth>,
    resolved: Mutex<Option<Resolved>>,
    round_robin: AtomicUsize,
    idle: Mutex<Vec<Connection>>,
    /// Chunks being sent to this server right now (the balancer steers away from a slow one).
    in_flight: AtomicUsize,
}

/// Counts one chunk in flight to a server for as long as it lives.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerNode {
    /// Chunks being sent to this server right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a chunk as in flight to this server until the guard drops.
    pub fn start_sending(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    pub fn new(config: ServerConfig, params: HealthParams, now: Instant) -> Self {
        let label = config
            .name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", config.host, config.port));
        ServerNode {
            config,
            label,
            health: Mutex::new(NodeHealth::new(params, now)),
            resolved: Mutex::new(None),
            round_robin: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, NodeHealth> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn available(&self) -> bool {
        self.health().available()
    }

    pub fn down_reason(&self) -> Option<String> {
        self.health().down_reason().map(str::to_string)
    }

    /// The phi accrual detector's suspicion now.
    pub fn phi(&self) -> f64 {
        self.health().phi(Instant::now())
    }

    /// Apply a health event and log the change, if there was one. `recovered` is notified
    /// when the server comes back.
    fn apply(&self, change: Option<HealthChange>, recovered: &Notify) {
        match change {
            None => {}
            Some(HealthChange::Down { reason }) => {
                tracing::warn!(server = %self.label, host = %self.config.host,
                    port = self.config.port, standby = self.config.standby, %reason,
                    "detached forwarding server: marked down");
                self.forget_address();
                self.idle_connections().clear();
            }
            Some(HealthChange::Up) => {
                tracing::info!(server = %self.label, host = %self.config.host,
                    port = self.config.port, standby = self.config.standby,
                    "recovered forwarding server: available again");
                recovered.notify_waiters();
            }
        }
    }

    pub fn heartbeat_ok(&self, recovered: &Notify) {
        let change = self.health().heartbeat_ok(Instant::now());
        self.apply(change, recovered);
    }

    pub fn heartbeat_missed(&self) {
        self.health().heartbeat_missed();
    }

    /// A send, connect, handshake, ack or heartbeat failed.
    pub fn failed(&self, reason: impl Into<String>, recovered: &Notify) {
        let change = self.health().failed(Instant::now(), reason);
        self.apply(change, recovered);
    }

    pub fn tick(&self, recovered: &Notify) {
        let change = self.health().tick(Instant::now());
        self.apply(change, recovered);
    }

    fn forget_address(&self) {
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The address to connect to: the literal IP, or a DNS answer cached for
    /// `expire_dns_cache` (None: forever; zero: not cached). With `dns_round_robin` successive
    /// calls rotate through all answers; otherwise the first answer is used.
    pub async fn address(
        &self,
        expire_dns_cache: Option<Duration>,
        dns_round_robin: bool,
    ) -> std::io::Result<SocketAddr> {
        let port = self.config.port;
        if let Ok(ip) = self.config.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let cached = {
            let guard = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            guard.as_ref().and_then(|r| {
                let fresh = match expire_dns_cache {
                    None => true,
                    Some(ttl) => r.at.elapsed() < ttl,
                };
                fresh.then(|| r.addrs.clone())
            })
        };
        let addrs = match cached {
            Some(a) => a,
            None => {
                let addrs: Vec<SocketAddr> =
                    tokio::net::lookup_host((self.config.host.as_str(), port))
                        .await?
                        .collect();
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{} has no address", self.config.host),
                    ));
                }
                *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Resolved {
                    addrs: addrs.clone(),
                    at: Instant::now(),
                });
                addrs
            }
        };
        let index = if dns_round_robin {
            self.round_robin.fetch_add(1, Ordering::Relaxed) % addrs.len()
        } else {
            0
        };
        Ok(addrs[index])
    }

    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that has not been idle longer than `timeout`.
    pub fn take_idle(&self, timeout: Option<Duration>) -> Option<Connection> {
        let mut idle = self.idle_connections();
        if let Some(t) = timeout {
            idle.retain(|c| c.idle_for() < t);
        }
        idle.pop()
    }

    /// Keep a connection for the next chunk (keepalive), unless the server is down.
    pub fn put_idle(&self, conn: Connection) {
        if self.available() {
            self.idle_connections().push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(heartbeat_type: HeartbeatType) -> HealthParams {
        HealthParams {
            heartbeat_type,
            heartbeat_interval: Duration::from_millis(200),
            recover_wait: Duration::from_secs(1),
            hard_timeout: Duration::from_secs(60),
            phi_failure_detector: true,
            phi_threshold: 16.0,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn recover_samples_follow_recover_wait_over_interval() {
        assert_eq!(params(HeartbeatType::Transport).recover_samples(), 5);
        let p = HealthParams {
            recover_wait: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            ..params(HeartbeatType::Transport)
        };
        assert_eq!(p.recover_samples(), 10);
        let p = HealthParams {
            recover_wait: Duration::ZERO,
            ..p
        };
        assert_eq!(p.recover_samples(), 1);
    }

    #[test]
    fn failure_marks_down_once_and_recovery_needs_recover_wait_of_heartbeats() {
        let t0 = Instant::now();
        let mut h = NodeHealth::new(params(HeartbeatType::Transport), t0);
        assert!(h.available());
        assert_eq!(
            h.failed(t0, "connection refused"),
            Some(HealthChange::Down {
                reason: "connection refused".into()
            })
        );
        // A second failure while down is not a change (logged once).
        assert_eq!(h.failed(ms(t0, 10), "again"), None);
        assert_eq!(h.down_reason(), Some("connection refused"));
        // recover_wait 1 s at 0.2 s: back with the sixth heartbeat, 1 s after the first.
        for i in 0..5 {
            assert_eq!(h.heartbeat_ok(ms(t0, 200 + 200 * i)), None, "heartbeat {i}");
            assert!(!h.available());
        }
        assert_eq!(h.heartbeat_ok(ms(t0, 1200)), Some(HealthChange::Up));
        assert!(h.available());
        assert_eq!(h.heartbeat_ok(ms(t0, 1400)), None);
    }

    #[test]
    fn a_failure_during_recovery_restarts_the_count() {
        let t0 = Instant::now();
        let mut h = NodeHealth::new(params(HeartbeatType::Transport), t0);
        h.failed(t0, "eof");
        for i in 1..5 {
            h.heartbeat_ok(ms(t0, 200 * i));
        }
        assert_eq!(h.failed(ms(t0, 1000), "refused"), None);
        for i in 6..11 {
            assert_eq!(h.heartbeat_ok(ms(t0, 200 * i)), None);
        }
        assert_eq!(h.heartbeat_ok(ms(t0, 2200)), Some(HealthChange::Up));

        // A missed (UDP) heartbeat also restarts it.
        h.failed(ms(t0, 2300), "eof");
        for i in 0..5 {
            h.heartbeat_ok(ms(t0, 2400 + 200 * i));
        }
        h.heartbeat_missed();
        assert_eq!(h.heartbeat_ok(ms(t0, 3400)), None);
        assert!(!h.available());
    }

    #[test]
    fn silence_trips_phi_then_hard_timeout() {
        let t0 = Instant::now();
        let mut h = NodeHealth::new(params(HeartbeatType::Udp), t0);
        for i in 1..=20 {
            h.heartbeat_ok(ms(t0, 200 * i));
        }
        let last = ms(t0, 4000);
        assert_eq!(h.tick(last + Duration::from_secs(1)), None);
        match h.tick(last + Duration::from_secs(45)) {
            Some(HealthChange::Down { reason }) => assert!(reason.contains("phi"), "{reason}"),
            other => panic!("expected down by phi, got {other:?}"),
        }

        let mut p = params(HeartbeatType::Udp);
        p.phi_failure_detector = false;
        p.hard_timeout = Duration::from_secs(3);
        let mut h = NodeHealth::new(p, t0);
        assert_eq!(h.tick(ms(t0, 2900)), None);
        match h.tick(ms(t0, 3100)) {
            Some(HealthChange::Down { reason }) => {
                assert!(reason.contains("hard_timeout"), "{reason}")
            }
            other => panic!("expected down by hard_timeout, got {other:?}"),
        }
    }

    #[test]
    fn without_heartbeats_a_down_node_is_retried_after_recover_wait() {
        let t0 = Instant::now();
        let mut h = NodeHealth::new(params(HeartbeatType::None), t0);
        // No phi without heartbeats, however long the silence.
        assert_eq!(h.tick(t0 + Duration::from_secs(3600)), None);
        h.failed(t0, "refused");
        assert_eq!(h.tick(ms(t0, 900)), None);
        assert_eq!(h.tick(ms(t0, 1000)), Some(HealthChange::Up));
    }
}
