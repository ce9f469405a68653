//! Weighted choice among out_forward servers, with standby servers as Fluentd defines them.
//!
//! Owns the rule: traffic goes to healthy non-standby servers in proportion to `weight`; standby
//! servers join only while active servers are down, one by one until the lost weight is covered,
//! and leave again as soon as the active ones are back. It keeps a smooth weighted round-robin
//! position so the split is even over short runs, and steers away from a server that is slow to
//! answer: once the weighted pick already holds [`SLOW_SLACK`] chunks in flight, a server less
//! loaded for its weight gets the chunk, so a slow server does not hold every flush worker. It must not probe nodes or send anything.

/// What the balancer needs to know about one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub weight: u32,
    pub standby: bool,
    pub available: bool,
    /// Chunks being sent to it right now.
    pub in_flight: usize,
}

/// Chunks in flight from which a server yields new chunks to a less loaded one.
pub const SLOW_SLACK: usize = 2;

/// The servers eligible for traffic right now, in configuration order.
pub fn eligible(servers: &[Candidate]) -> Vec<usize> {
    let mut out: Vec<usize> = (0..servers.len())
        .filter(|&i| !servers[i].standby && servers[i].available && servers[i].weight > 0)
        .collect();
    let mut lost: i64 = servers
        .iter()
        .filter(|s| !s.standby && !s.available)
        .map(|s| s.weight as i64)
        .sum();
    // With no active server to carry traffic at all, every available standby serves.
    let no_active_path = out.is_empty() && lost == 0;
    for (i, s) in servers.iter().enumerate() {
        // As in Fluentd, weight 0 takes a server out of rotation, standby or not.
        if s.standby && s.available && s.weight > 0 && (lost > 0 || no_active_path) {
            out.push(i);
            lost -= s.weight as i64;
        }
    }
    out
}

/// Smooth weighted round-robin (each pick adds every weight, takes the largest, subtracts the total).
#[derive(Debug, Default, Clone)]
pub struct Balancer {
    current: Vec<i64>,
}

impl Balancer {
    /// Order in which to try servers for the next chunk: the weighted pick first, then the other
    /// eligible servers (so a failed send moves on at once).
    pub fn order(&mut self, servers: &[Candidate]) -> Vec<usize> {
        let elig = eligible(servers);
        if self.current.len() != servers.len() {
            self.current = vec![0; servers.len()];
        }
        if elig.is_empty() {
            return elig;
        }
        let total: i64 = elig.iter().map(|&i| servers[i].weight.max(1) as i64).sum();
        for &i in &elig {
            self.current[i] += servers[i].weight.max(1) as i64;
        }
        let &pick = elig
            .iter()
            .max_by_key(|&&i| (self.current[i], std::cmp::Reverse(i)))
            .expect("non-empty");
        self.current[pick] -= total;
        // A server already holding SLOW_SLACK chunks yields to one less loaded for its weight.
        let load = |i: usize| servers[i].in_flight as f64 / servers[i].weight.max(1) as f64;
        let least_busy = elig
            .iter()
            .copied()
            .min_by(|&a, &b| load(a).total_cmp(&load(b)))
            .expect("non-empty");
        let pick = if servers[pick].in_flight >= SLOW_SLACK && load(least_busy) < load(pick) {
            least_busy
        } else {
            pick
        };
        let mut order = vec![pick];
        order.extend(elig.iter().copied().filter(|&i| i != pick));
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: u32, standby: bool, available: bool) -> Candidate {
        Candidate {
            weight,
            standby,
            available,
            in_flight: 0,
        }
    }

    #[test]
    fn a_slow_server_does_not_take_every_chunk() {
        let mut b = Balancer::default();
        let mut s = [c(60, false, true), c(60, false, true)];
        // Server 0 never answers: every chunk sent to it stays in flight.
        let mut to_slow = 0;
        for _ in 0..20 {
            if b.order(&s)[0] == 0 {
                s[0].in_flight += 1;
                to_slow += 1;
            }
        }
        assert_eq!(to_slow, SLOW_SLACK, "slow server got {to_slow} chunks");
        // Standbys are still not used while an active server is healthy, however busy.
        let mut busy = [c(60, false, true), c(60, true, true)];
        busy[0].in_flight = 10;
        assert_eq!(b.order(&busy), vec![0]);
    }

    #[test]
    fn standby_only_while_primary_is_down() {
        assert_eq!(eligible(&[c(60, false, true), c(60, true, true)]), vec![0]);
        assert_eq!(eligible(&[c(60, false, false), c(60, true, true)]), vec![1]);
        assert_eq!(
            eligible(&[c(60, false, false), c(60, true, false)]),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn standbys_cover_lost_weight_one_by_one() {
        let s = [
            c(60, false, false),
            c(60, false, true),
            c(60, true, true),
            c(60, true, true),
        ];
        assert_eq!(eligible(&s), vec![1, 2]);
        let s = [c(120, false, false), c(60, true, true), c(60, true, true)];
        assert_eq!(eligible(&s), vec![1, 2]);
        // A standby of weight 0 never serves.
        let s = [c(60, false, false), c(0, true, true), c(60, true, true)];
        assert_eq!(eligible(&s), vec![2]);
    }

    #[test]
    fn weights_split_traffic() {
        let s = [c(60, false, true), c(30, false, true)];
        let mut b = Balancer::default();
        let mut hits = [0; 2];
        for _ in 0..90 {
            hits[b.order(&s)[0]] += 1;
        }
        assert_eq!(hits, [60, 30]);
        // Failover order lists the others after the pick.
        assert_eq!(b.order(&s).len(), 2);
    }
}
