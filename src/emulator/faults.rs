//! Fault injection: rules that match calls by endpoint (Google method id such as
//! `calendar.events.insert`, or a prefix ending in `*`), HTTP method and user, and fire on the
//! n-th matching call, at a seeded random rate, or always.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What happens to a call a rule fires on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this HTTP status in the API's error shape (500, 503, 429, ...), without
    /// executing the call.
    Status {
        code: u16,
        /// `Retry-After` header value, if any.
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Wait this long (wall clock) before executing the call normally.
    Delay { ms: u64 },
    /// Close the connection without executing the call or answering.
    DropConnection,
    /// Execute the call (the write is applied), then close the connection without answering.
    LostResponse,
}

/// Which calls a rule applies to; absent fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultMatch {
    /// Google method id (`calendar.events.insert`, `people.people.createContact`,
    /// `calendar.batch`, `oauth2.token`), or a prefix followed by `*` (`calendar.*`).
    pub endpoint: Option<String>,
    /// HTTP method (`GET`, `POST`, ...).
    pub method: Option<String>,
    /// Impersonated subject.
    pub user: Option<String>,
}

/// When a matching call is faulted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FaultTrigger {
    /// The `n`-th matching call (1-based) and the `times - 1` following ones.
    Nth {
        n: u64,
        #[serde(default = "one")]
        times: u64,
    },
    /// Each matching call with this probability, drawn from the emulator's seeded RNG.
    Rate { probability: f64 },
    /// Every matching call.
    Always,
}

fn one() -> u64 {
    1
}

/// A fault rule as given to the control API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(default)]
    pub matches: FaultMatch,
    pub trigger: FaultTrigger,
    pub fault: FaultKind,
}

/// A rule with its bookkeeping, as listed by the control API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    pub id: u64,
    pub rule: FaultRule,
    /// Matching calls seen so far.
    pub seen: u64,
    /// Calls faulted so far.
    pub fired: u64,
}

#[derive(Debug)]
pub(crate) struct FaultState {
    seed: u64,
    rng: StdRng,
    rules: Vec<ActiveFault>,
    next_id: u64,
}

impl FaultMatch {
    fn matches(&self, endpoint: &str, method: &str, user: Option<&str>) -> bool {
        let endpoint_ok = match self.endpoint.as_deref() {
            None => true,
            Some(pattern) => match pattern.strip_suffix('*') {
                Some(prefix) => endpoint.starts_with(prefix),
                None => pattern == endpoint,
            },
        };
        let method_ok = self
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let user_ok = match (self.user.as_deref(), user) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        endpoint_ok && method_ok && user_ok
    }
}

impl FaultState {
    pub fn new(seed: u64) -> FaultState {
        FaultState {
            seed,
            rng: StdRng::seed_from_u64(seed),
            rules: Vec::new(),
            next_id: 0,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Re-seed the RNG (makes rate-based faults reproducible from this point).
    pub fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.rng = StdRng::seed_from_u64(seed);
    }

    pub fn add(&mut self, rule: FaultRule) -> u64 {
        self.next_id += 1;
        self.rules.push(ActiveFault {
            id: self.next_id,
            rule,
            seen: 0,
            fired: 0,
        });
        self.next_id
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before != self.rules.len()
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn list(&self) -> Vec<ActiveFault> {
        self.rules.clone()
    }

    /// Count the call against every matching rule and return the first fault that fires.
    pub fn decide(
        &mut self,
        endpoint: &str,
        method: &str,
        user: Option<&str>,
    ) -> Option<FaultKind> {
        let mut fired: Option<FaultKind> = None;
        for active in &mut self.rules {
            if !active.rule.matches.matches(endpoint, method, user) {
                continue;
            }
            active.seen += 1;
            let fire = match active.rule.trigger {
                FaultTrigger::Nth { n, times } => active.seen >= n && active.seen < n + times,
                FaultTrigger::Rate { probability } => self.rng.random::<f64>() < probability,
                FaultTrigger::Always => true,
            };
            if fire && fired.is_none() {
                active.fired += 1;
                fired = Some(active.rule.fault.clone());
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_rule_fires_once_on_the_nth_matching_call() {
        let mut f = FaultState::new(1);
        f.add(FaultRule {
            matches: FaultMatch {
                endpoint: Some("calendar.events.*".into()),
                ..Default::default()
            },
            trigger: FaultTrigger::Nth { n: 2, times: 1 },
            fault: FaultKind::DropConnection,
        });
        assert_eq!(
            f.decide("calendar.events.insert", "POST", Some("a@b")),
            None
        );
        assert_eq!(f.decide("people.people.get", "GET", Some("a@b")), None);
        assert_eq!(
            f.decide("calendar.events.list", "GET", Some("a@b")),
            Some(FaultKind::DropConnection)
        );
        assert_eq!(f.decide("calendar.events.list", "GET", Some("a@b")), None);
    }

    #[test]
    fn rate_rules_are_reproducible_with_a_seed() {
        let run = |seed| {
            let mut f = FaultState::new(seed);
            f.add(FaultRule {
                matches: FaultMatch::default(),
                trigger: FaultTrigger::Rate { probability: 0.3 },
                fault: FaultKind::Status {
                    code: 503,
                    retry_after_secs: None,
                },
            });
            (0..100)
                .map(|_| f.decide("x", "GET", None).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let hits = run(7).iter().filter(|h| **h).count();
        assert!((10..60).contains(&hits), "{hits}");
    }
}
