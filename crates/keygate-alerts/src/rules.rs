// Alert rules, evaluated on a stream of request outcomes and gauge readings. Pure: the caller
// supplies the time, so every rule is tested without sleeping. Memory is bounded: each rule
// tracks at most `MAX_SUBJECTS` subjects (apps, IPs, ranges) and forgets idle ones.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Subjects tracked per rule; a flood of new IPs past this is counted, not tracked.
pub const MAX_SUBJECTS: usize = 50_000;

/// One finished request, as alerting sees it. No secret, no key material.
#[derive(Debug, Clone)]
pub struct Event {
    pub app: Option<String>,
    pub ip: IpAddr,
    /// `ok` or the stable error code.
    pub code: String,
}

/// Whom a counting rule counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    App,
    Ip,
}

/// A rule from the config (operator) or from the database (tenant). `PartialEq` lets a reload
/// with unchanged rules keep the counting state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// `signature_mismatch` refusals above `threshold` within `window_secs`.
    SignatureFailures {
        name: Option<String>,
        per: Per,
        threshold: u32,
        #[serde(default = "default_window")]
        window_secs: u64,
        #[serde(default = "default_cooldown")]
        cooldown_secs: u64,
    },
    /// `nonce_replayed` refusals (a replay burst).
    Replays {
        name: Option<String>,
        per: Per,
        threshold: u32,
        #[serde(default = "default_window")]
        window_secs: u64,
        #[serde(default = "default_cooldown")]
        cooldown_secs: u64,
    },
    /// Any of `codes` (e.g. the outbound `provider_timeout`, `provider_unavailable`).
    CodeSpike {
        name: Option<String>,
        codes: Vec<String>,
        per: Per,
        threshold: u32,
        #[serde(default = "default_window")]
        window_secs: u64,
        #[serde(default = "default_cooldown")]
        cooldown_secs: u64,
    },
    /// An app that has been calling for `learn_secs` suddenly calls (successfully) from an
    /// address range it never used: IPv4 /`v4_prefix`, IPv6 /`v6_prefix`.
    NewIpRange {
        name: Option<String>,
        #[serde(default = "default_learn")]
        learn_secs: u64,
        #[serde(default = "default_v4_prefix")]
        v4_prefix: u8,
        #[serde(default = "default_v6_prefix")]
        v6_prefix: u8,
    },
    /// A gauge (e.g. `audit_spill_bytes`) above `threshold`.
    GaugeAbove {
        name: Option<String>,
        gauge: String,
        threshold: f64,
        #[serde(default = "default_cooldown")]
        cooldown_secs: u64,
    },
}

fn default_window() -> u64 {
    60
}
fn default_cooldown() -> u64 {
    300
}
fn default_learn() -> u64 {
    86_400
}
fn default_v4_prefix() -> u8 {
    24
}
fn default_v6_prefix() -> u8 {
    48
}

/// A fired alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name (default: its kind).
    pub rule: String,
    pub kind: String,
    /// App id, IP, `app@range` or gauge name.
    pub subject: String,
    /// Events in the window (or the gauge value, rounded).
    pub count: u64,
    pub window_secs: u64,
    /// Unix seconds.
    pub at: u64,
    pub message: String,
    /// The tenant owning the rule that fired; `None` for the operator's rules.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant: Option<String>,
}

impl Alert {
    /// The message as sent to chat channels and mail: prefixed with `[tenant T]` when a
    /// tenant's rule fired.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.tenant {
            Some(t) => format!("[tenant {t}] {}", self.message).into(),
            None => self.message.as_str().into(),
        }
    }
}

impl RuleConfig {
    /// The rule's `name`, if set.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::SignatureFailures { name, .. }
            | Self::Replays { name, .. }
            | Self::CodeSpike { name, .. }
            | Self::NewIpRange { name, .. }
            | Self::GaugeAbove { name, .. } => name.as_deref(),
        }
    }
}

#[derive(Debug)]
enum Kind {
    Count { label: &'static str, codes: Vec<String>, per: Per, threshold: u32, window: u64, cooldown: u64 },
    NewRange { learn: u64, v4: u8, v6: u8 },
    Gauge { gauge: String, threshold: f64, cooldown: u64 },
}

#[derive(Debug, Default)]
struct Subjects {
    /// Event times (Unix seconds) inside the window, per subject.
    hits: HashMap<String, VecDeque<u64>>,
    /// Last alert per subject, for the cooldown.
    last_alert: HashMap<String, u64>,
    /// Per app: first seen, and the ranges seen.
    ranges: HashMap<String, (u64, HashMap<String, u64>)>,
    untracked: u64,
}

#[derive(Debug)]
struct Rule {
    name: String,
    kind: Kind,
    state: Subjects,
}

/// Evaluates every rule on each input.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    /// Subjects tracked per rule (see [`MAX_SUBJECTS`]).
    max_subjects: usize,
}

/// Why a rule is invalid.
#[derive(Debug, thiserror::Error)]
#[error("alert rule {index}: {reason}")]
pub struct RuleError {
    pub index: usize,
    pub reason: String,
}

impl Engine {
    /// Validates the rules; each tracks at most [`MAX_SUBJECTS`] subjects.
    pub fn new(configs: &[RuleConfig]) -> Result<Self, RuleError> {
        Self::with_subject_limit(configs, MAX_SUBJECTS)
    }

    /// [`Engine::new`] with another bound on the subjects tracked per rule (tenant engines use
    /// a smaller one: there is one engine per tenant).
    pub fn with_subject_limit(configs: &[RuleConfig], max_subjects: usize) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(configs.len());
        for (index, c) in configs.iter().enumerate() {
            let err = |reason: &str| RuleError { index, reason: reason.to_string() };
            let (name, kind) = match c.clone() {
                RuleConfig::SignatureFailures { name, per, threshold, window_secs, cooldown_secs } => (
                    name.unwrap_or_else(|| "signature_failures".into()),
                    Kind::Count {
                        label: "signature failures",
                        codes: vec!["signature_mismatch".into()],
                        per,
                        threshold,
                        window: window_secs,
                        cooldown: cooldown_secs,
                    },
                ),
                RuleConfig::Replays { name, per, threshold, window_secs, cooldown_secs } => (
                    name.unwrap_or_else(|| "replays".into()),
                    Kind::Count {
                        label: "replayed requests",
                        codes: vec!["nonce_replayed".into()],
                        per,
                        threshold,
                        window: window_secs,
                        cooldown: cooldown_secs,
                    },
                ),
                RuleConfig::CodeSpike { name, codes, per, threshold, window_secs, cooldown_secs } => {
                    if codes.is_empty() {
                        return Err(err("codes must not be empty"));
                    }
                    (
                        name.unwrap_or_else(|| "code_spike".into()),
                        Kind::Count {
                            label: "errors",
                            codes,
                            per,
                            threshold,
                            window: window_secs,
                            cooldown: cooldown_secs,
                        },
                    )
                }
                RuleConfig::NewIpRange { name, learn_secs, v4_prefix, v6_prefix } => {
                    if v4_prefix > 32 || v6_prefix > 128 {
                        return Err(err("prefix too long"));
                    }
                    (
                        name.unwrap_or_else(|| "new_ip_range".into()),
                        Kind::NewRange { learn: learn_secs, v4: v4_prefix, v6: v6_prefix },
                    )
                }
                RuleConfig::GaugeAbove { name, gauge, threshold, cooldown_secs } => (
                    name.unwrap_or_else(|| format!("{gauge}_above")),
                    Kind::Gauge { gauge, threshold, cooldown: cooldown_secs },
                ),
            };
            if let Kind::Count { threshold, window, .. } = &kind {
                if *threshold == 0 || *window == 0 || *window > 86_400 {
                    return Err(err("threshold must be ≥ 1 and window_secs 1..=86400"));
                }
            }
            rules.push(Rule { name, kind, state: Subjects::default() });
        }
        Ok(Self { rules, max_subjects: max_subjects.max(1) })
    }

    /// Feeds one request outcome at Unix second `now`; returns the alerts it fires.
    pub fn observe(&mut self, ev: &Event, now: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        let max_subjects = self.max_subjects;
        for rule in &mut self.rules {
            match &rule.kind {
                Kind::Count { label, codes, per, threshold, window, cooldown } => {
                    if !codes.contains(&ev.code) {
                        continue;
                    }
                    let subject = match per {
                        Per::App => match &ev.app {
                            Some(a) => a.clone(),
                            None => continue,
                        },
                        Per::Ip => ev.ip.to_canonical().to_string(),
                    };
                    let st = &mut rule.state;
                    if !st.hits.contains_key(&subject) && st.hits.len() >= max_subjects {
                        prune(&mut st.hits, now, *window);
                        if st.hits.len() >= max_subjects {
                            st.untracked += 1;
                            continue;
                        }
                    }
                    let q = st.hits.entry(subject.clone()).or_default();
                    q.push_back(now);
                    while q.front().is_some_and(|t| *t + window <= now) {
                        q.pop_front();
                    }
                    // Never more than threshold + 1 entries: enough to decide, bounded memory.
                    while q.len() > *threshold as usize + 1 {
                        q.pop_front();
                    }
                    let count = q.len() as u64;
                    if count > u64::from(*threshold) && cooled(&st.last_alert, &subject, now, *cooldown) {
                        st.last_alert.insert(subject.clone(), now);
                        let by = if *per == Per::App { "app" } else { "client IP" };
                        out.push(Alert {
                            rule: rule.name.clone(),
                            kind: "count".into(),
                            message: format!(
                                "keygate: {count} {label} from {by} {subject} within {window} s (threshold {threshold})"
                            ),
                            subject,
                            count,
                            window_secs: *window,
                            at: now,
                            tenant: None,
                        });
                    }
                }
                Kind::NewRange { learn, v4, v6 } => {
                    let (Some(app), "ok") = (&ev.app, ev.code.as_str()) else { continue };
                    let range = range_of(ev.ip, *v4, *v6);
                    let st = &mut rule.state;
                    if !st.ranges.contains_key(app) && st.ranges.len() >= max_subjects {
                        st.untracked += 1;
                        continue;
                    }
                    let (first_seen, seen) =
                        st.ranges.entry(app.clone()).or_insert_with(|| (now, HashMap::new()));
                    let learning = now < *first_seen + learn;
                    let new = !seen.contains_key(&range);
                    if new && seen.len() >= 1024 {
                        continue; // an app calling from everywhere: this rule cannot help
                    }
                    seen.insert(range.clone(), now);
                    if new && !learning {
                        out.push(Alert {
                            rule: rule.name.clone(),
                            kind: "new_ip_range".into(),
                            message: format!("keygate: app {app} called from a new address range {range}"),
                            subject: format!("{app}@{range}"),
                            count: 1,
                            window_secs: 0,
                            at: now,
                            tenant: None,
                        });
                    }
                }
                Kind::Gauge { .. } => {}
            }
        }
        out
    }

    /// Feeds a gauge reading; returns the alerts it fires.
    pub fn gauge(&mut self, name: &str, value: f64, now: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        for rule in &mut self.rules {
            let Kind::Gauge { gauge, threshold, cooldown } = &rule.kind else { continue };
            if gauge != name || value <= *threshold {
                continue;
            }
            if cooled(&rule.state.last_alert, gauge, now, *cooldown) {
                rule.state.last_alert.insert(gauge.clone(), now);
                out.push(Alert {
                    rule: rule.name.clone(),
                    kind: "gauge".into(),
                    subject: gauge.clone(),
                    count: value.max(0.0) as u64,
                    window_secs: 0,
                    at: now,
                    message: format!("keygate: {gauge} is {value} (threshold {threshold})"),
                    tenant: None,
                });
            }
        }
        out
    }

    /// Subjects that could not be tracked because a rule was full (per rule name).
    pub fn untracked(&self) -> Vec<(String, u64)> {
        self.rules.iter().map(|r| (r.name.clone(), r.state.untracked)).collect()
    }
}

fn cooled(last: &HashMap<String, u64>, subject: &str, now: u64, cooldown: u64) -> bool {
    last.get(subject).is_none_or(|t| now >= t + cooldown)
}

fn prune(hits: &mut HashMap<String, VecDeque<u64>>, now: u64, window: u64) {
    hits.retain(|_, q| q.back().is_some_and(|t| t + window > now));
}

/// `a.b.c.0/24` or the IPv6 network, as text.
fn range_of(ip: IpAddr, v4: u8, v6: u8) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if v4 == 0 { 0 } else { u32::MAX << (32 - u32::from(v4)) };
            format!("{}/{v4}", std::net::Ipv4Addr::from(bits & mask))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if v6 == 0 { 0 } else { u128::MAX << (128 - u32::from(v6)) };
            format!("{}/{v6}", std::net::Ipv6Addr::from(bits & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(app: &str, ip: &str, code: &str) -> Event {
        Event { app: Some(app.into()), ip: ip.parse().unwrap(), code: code.into() }
    }

    fn sig(per: Per, threshold: u32) -> RuleConfig {
        RuleConfig::SignatureFailures { name: None, per, threshold, window_secs: 60, cooldown_secs: 300 }
    }

    #[test]
    fn fires_above_threshold_within_the_window_then_cools_down() {
        let mut e = Engine::new(&[sig(Per::App, 3)]).unwrap();
        for t in 0..3 {
            assert!(e.observe(&ev("shop", "10.0.0.1", "signature_mismatch"), 100 + t).is_empty());
        }
        assert!(e.observe(&ev("shop", "10.0.0.1", "ok"), 103).is_empty(), "other codes do not count");
        let a = e.observe(&ev("shop", "10.0.0.2", "signature_mismatch"), 104);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].subject.as_str(), a[0].count, a[0].rule.as_str()),
            ("shop", 4, "signature_failures")
        );
        assert!(a[0].message.contains("4 signature failures from app shop"));
        // Cooldown: more failures do not re-alert for 300 s.
        for t in 105..200 {
            assert!(e.observe(&ev("shop", "10.0.0.2", "signature_mismatch"), t).is_empty());
        }
        // After it, a new spike (more than 3 within the window) alerts again.
        for t in 401..404 {
            assert!(e.observe(&ev("shop", "10.0.0.2", "signature_mismatch"), t).is_empty());
        }
        assert_eq!(e.observe(&ev("shop", "10.0.0.2", "signature_mismatch"), 404).len(), 1);
    }

    #[test]
    fn old_events_leave_the_window() {
        let mut e = Engine::new(&[sig(Per::Ip, 2)]).unwrap();
        assert!(e.observe(&ev("a", "192.0.2.1", "signature_mismatch"), 0).is_empty());
        assert!(e.observe(&ev("a", "192.0.2.1", "signature_mismatch"), 30).is_empty());
        // The first left the window at 60: only two in the window at 61.
        assert!(e.observe(&ev("b", "192.0.2.1", "signature_mismatch"), 61).is_empty());
        let a = e.observe(&ev("c", "::ffff:192.0.2.1", "signature_mismatch"), 62);
        assert_eq!(a.len(), 1, "per IP, IPv4-mapped counts as the same address");
        assert_eq!(a[0].subject, "192.0.2.1");
    }

    #[test]
    fn replays_and_code_spikes() {
        let mut e = Engine::new(&[
            RuleConfig::Replays {
                name: Some("burst".into()),
                per: Per::App,
                threshold: 1,
                window_secs: 10,
                cooldown_secs: 0,
            },
            RuleConfig::CodeSpike {
                name: None,
                codes: vec!["provider_timeout".into(), "provider_unavailable".into()],
                per: Per::App,
                threshold: 1,
                window_secs: 10,
                cooldown_secs: 60,
            },
        ])
        .unwrap();
        e.observe(&ev("a", "10.0.0.1", "nonce_replayed"), 1);
        assert_eq!(e.observe(&ev("a", "10.0.0.1", "nonce_replayed"), 2)[0].rule, "burst");
        e.observe(&ev("a", "10.0.0.1", "provider_timeout"), 3);
        assert_eq!(e.observe(&ev("a", "10.0.0.1", "provider_unavailable"), 4)[0].rule, "code_spike");
    }

    #[test]
    fn new_ip_range_after_learning() {
        let mut e = Engine::new(&[RuleConfig::NewIpRange {
            name: None,
            learn_secs: 100,
            v4_prefix: 24,
            v6_prefix: 48,
        }])
        .unwrap();
        assert!(e.observe(&ev("shop", "203.0.113.5", "ok"), 0).is_empty());
        assert!(e.observe(&ev("shop", "198.51.100.7", "ok"), 50).is_empty(), "still learning");
        assert!(e.observe(&ev("shop", "203.0.113.99", "ok"), 150).is_empty(), "known /24");
        assert!(
            e.observe(&ev("shop", "192.0.2.1", "signature_mismatch"), 151).is_empty(),
            "only successful calls"
        );
        let a = e.observe(&ev("shop", "192.0.2.1", "ok"), 152);
        assert_eq!(a[0].subject, "shop@192.0.2.0/24");
        assert!(e.observe(&ev("shop", "192.0.2.200", "ok"), 153).is_empty(), "alerted once per range");
        let a = e.observe(&ev("shop", "2001:db8:1:2::1", "ok"), 154);
        assert_eq!(a[0].subject, "shop@2001:db8:1::/48");
    }

    #[test]
    fn gauges_and_bad_rules() {
        let mut e = Engine::new(&[RuleConfig::GaugeAbove {
            name: None,
            gauge: "audit_spill_bytes".into(),
            threshold: 1e6,
            cooldown_secs: 60,
        }])
        .unwrap();
        assert!(e.gauge("audit_spill_bytes", 10.0, 0).is_empty());
        assert_eq!(e.gauge("audit_spill_bytes", 2e6, 1)[0].count, 2_000_000);
        assert!(e.gauge("audit_spill_bytes", 3e6, 2).is_empty(), "cooldown");
        assert!(Engine::new(&[sig(Per::App, 0)]).is_err());
        assert!(Engine::new(&[RuleConfig::CodeSpike {
            name: None,
            codes: vec![],
            per: Per::App,
            threshold: 1,
            window_secs: 1,
            cooldown_secs: 1
        }])
        .is_err());
    }

    #[test]
    fn memory_is_bounded_under_an_ip_flood() {
        let mut e = Engine::new(&[sig(Per::Ip, 1000)]).unwrap();
        for i in 0..(MAX_SUBJECTS as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            e.observe(&Event { app: None, ip: ip.into(), code: "signature_mismatch".into() }, 5);
        }
        assert_eq!(e.untracked()[0].1, 10);
    }
}
