// Tenant-owned alert rules. A tenant's rules are stricter than the operator's (named, no gauges,
// a bounded number) and run in an engine of their own that only sees events of that tenant's
// apps. Pure like `rules`: the caller supplies the time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::rules::{Alert, Engine, Event, RuleConfig, RuleError};

/// Rules a tenant may own.
pub const MAX_TENANT_RULES: usize = 50;

/// Longest rule name (tenant rules).
pub const MAX_RULE_NAME: usize = 64;

/// Subjects tracked per tenant rule: there is one engine per tenant, so this is smaller than
/// the operator's [`crate::rules::MAX_SUBJECTS`].
pub const TENANT_MAX_SUBJECTS: usize = 5_000;

/// Tenants whose alerts [`crate::Alerts::view_for_tenant`] keeps; past this, the tenant whose
/// newest alert is the oldest is forgotten.
pub const MAX_TRACKED_TENANTS: usize = 1_024;

/// Checks a tenant's rules: everything [`Engine::new`] checks, plus: no `gauge_above` (gauges
/// are process-wide, operator only), every rule named (1..=[`MAX_RULE_NAME`] characters of
/// `A-Z a-z 0-9 _ . -`) with names unique within the list, and at most [`MAX_TENANT_RULES`]
/// rules. The error names the first offending rule by index.
pub fn validate_tenant_rules(rules: &[RuleConfig]) -> Result<(), RuleError> {
    if rules.len() > MAX_TENANT_RULES {
        return Err(RuleError {
            index: MAX_TENANT_RULES,
            reason: format!("at most {MAX_TENANT_RULES} rules per tenant ({} given)", rules.len()),
        });
    }
    let mut names = HashSet::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let err = |reason: String| RuleError { index, reason };
        if matches!(rule, RuleConfig::GaugeAbove { .. }) {
            return Err(err(
                "gauge_above is not available for tenant rules (gauges are process-wide, operator only)"
                    .into(),
            ));
        }
        let name = match rule.name() {
            Some(n) if !n.is_empty() => n,
            _ => return Err(err("a name is required".into())),
        };
        // The name is not echoed: it failed the check, so it may be long or odd.
        if !valid_name(name) {
            return Err(err(format!("name must be 1 to {MAX_RULE_NAME} characters of A-Z a-z 0-9 _ . -")));
        }
        if !names.insert(name) {
            return Err(err(format!("duplicate name {name}")));
        }
        Engine::new(std::slice::from_ref(rule)).map_err(|e| err(e.reason))?;
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_RULE_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Tenant rules as last given to [`crate::Alerts::set_tenant_rules`]. Shared (behind an `Arc`)
/// by the handle, for the views, and the evaluation task.
#[derive(Debug, Default)]
pub(crate) struct TenantSet {
    /// As given: the next call is compared with it, and an identical reload is a no-op.
    pub(crate) rules: HashMap<String, Vec<RuleConfig>>,
    /// App id → tenant id.
    pub(crate) app_tenant: HashMap<String, String>,
    /// Tenants whose rules failed [`validate_tenant_rules`]: their rules are off (logged once,
    /// when they changed).
    pub(crate) refused: HashSet<String>,
}

impl TenantSet {
    /// The tenant's rules in force (none if refused).
    pub(crate) fn active(&self, tenant: &str) -> Option<&[RuleConfig]> {
        if self.refused.contains(tenant) {
            return None;
        }
        self.rules.get(tenant).map(Vec::as_slice)
    }

    /// Every tenant's rules in force.
    pub(crate) fn all_active(&self) -> impl Iterator<Item = (&String, &Vec<RuleConfig>)> {
        self.rules.iter().filter(|(t, _)| !self.refused.contains(*t))
    }

    /// The next set, validating only the tenants whose rules changed since `self` (the others
    /// keep their verdict, so a refused set is logged once, not on every reload).
    pub(crate) fn next(
        &self,
        rules: HashMap<String, Vec<RuleConfig>>,
        app_tenant: HashMap<String, String>,
    ) -> Self {
        let mut refused = HashSet::new();
        for (tenant, list) in &rules {
            let bad = if self.rules.get(tenant) == Some(list) {
                self.refused.contains(tenant)
            } else if let Err(e) = validate_tenant_rules(list) {
                tracing::warn!(tenant = %tenant, error = %e, "tenant alert rules refused; that tenant's rules are off");
                true
            } else {
                false
            };
            if bad {
                refused.insert(tenant.clone());
            }
        }
        Self { rules, app_tenant, refused }
    }
}

/// One engine per tenant, fed only the events of that tenant's apps. Lives in the evaluation
/// task.
#[derive(Debug, Default)]
pub(crate) struct TenantEngines {
    /// Tenant → (its rules, their engine).
    engines: HashMap<String, (Vec<RuleConfig>, Engine)>,
    set: Arc<TenantSet>,
}

impl TenantEngines {
    /// Switches to `set`: a tenant whose rules did not change keeps its engine (and its
    /// counts); changed rules start from zero; tenants gone (or refused) are dropped.
    pub(crate) fn update(&mut self, set: Arc<TenantSet>) {
        self.engines.retain(|tenant, (rules, _)| set.active(tenant) == Some(rules.as_slice()));
        for (tenant, rules) in set.all_active() {
            if self.engines.contains_key(tenant) {
                continue;
            }
            match Engine::with_subject_limit(rules, TENANT_MAX_SUBJECTS) {
                Ok(engine) => {
                    self.engines.insert(tenant.clone(), (rules.clone(), engine));
                }
                // Validated before; never panic on a tenant's input anyway.
                Err(e) => tracing::warn!(tenant = %tenant, error = %e, "tenant alert rules skipped"),
            }
        }
        self.set = set;
    }

    /// Feeds the event to the engine of the tenant owning its app (if any); the alerts carry
    /// the tenant.
    pub(crate) fn observe(&mut self, ev: &Event, now: u64) -> Vec<Alert> {
        let Some(tenant) = ev.app.as_ref().and_then(|app| self.set.app_tenant.get(app)) else {
            return Vec::new();
        };
        let Some((_, engine)) = self.engines.get_mut(tenant) else {
            return Vec::new();
        };
        let mut out = engine.observe(ev, now);
        for a in &mut out {
            a.tenant = Some(tenant.clone());
        }
        out
    }

    #[cfg(test)]
    fn tenants(&self) -> Vec<&str> {
        let mut t: Vec<&str> = self.engines.keys().map(String::as_str).collect();
        t.sort_unstable();
        t
    }
}

/// The newest fired alerts: [`crate::RECENT`] overall, and as many per tenant (so a noisy
/// tenant, or the operator's rules, cannot push a tenant's alerts out of its view), for at most
/// [`MAX_TRACKED_TENANTS`] tenants.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    all: VecDeque<Alert>,
    tenants: HashMap<String, TenantLog>,
    /// Increases with every alert: orders tenants by their newest alert.
    seq: u64,
}

#[derive(Debug, Default)]
struct TenantLog {
    recent: VecDeque<Alert>,
    fired: u64,
    last: u64,
}

fn push_bounded(q: &mut VecDeque<Alert>, a: &Alert) {
    if q.len() >= crate::RECENT {
        q.pop_front();
    }
    q.push_back(a.clone());
}

impl Recent {
    pub(crate) fn push(&mut self, a: &Alert) {
        self.seq += 1;
        push_bounded(&mut self.all, a);
        let Some(tenant) = &a.tenant else { return };
        if !self.tenants.contains_key(tenant) && self.tenants.len() >= MAX_TRACKED_TENANTS {
            let oldest = self.tenants.iter().min_by_key(|(_, log)| log.last).map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                self.tenants.remove(&t);
            }
        }
        let log = self.tenants.entry(tenant.clone()).or_default();
        push_bounded(&mut log.recent, a);
        log.fired += 1;
        log.last = self.seq;
    }

    /// Newest first.
    pub(crate) fn all(&self) -> Vec<Alert> {
        self.all.iter().rev().cloned().collect()
    }

    /// The tenant's newest alerts (newest first) and how many its rules fired.
    pub(crate) fn tenant(&self, tenant: &str) -> (Vec<Alert>, u64) {
        match self.tenants.get(tenant) {
            Some(log) => (log.recent.iter().rev().cloned().collect(), log.fired),
            None => (Vec::new(), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::rules::Per;

    fn sig(name: &str, per: Per, threshold: u32) -> RuleConfig {
        RuleConfig::SignatureFailures {
            name: Some(name.into()),
            per,
            threshold,
            window_secs: 60,
            cooldown_secs: 300,
        }
    }

    fn ev(app: Option<&str>, ip: &str, code: &str) -> Event {
        Event { app: app.map(str::to_string), ip: ip.parse().unwrap(), code: code.into() }
    }

    fn set(prev: &TenantSet, rules: &[(&str, Vec<RuleConfig>)], apps: &[(&str, &str)]) -> Arc<TenantSet> {
        Arc::new(prev.next(
            rules.iter().map(|(t, r)| (t.to_string(), r.clone())).collect(),
            apps.iter().map(|(a, t)| (a.to_string(), t.to_string())).collect(),
        ))
    }

    fn reason(rules: &[RuleConfig]) -> (usize, String) {
        let e = validate_tenant_rules(rules).unwrap_err();
        (e.index, e.reason)
    }

    #[test]
    fn valid_tenant_rules_pass() {
        let rules = vec![
            sig("sig.per-app_1", Per::App, 5),
            sig("sig-ip", Per::Ip, 5),
            RuleConfig::NewIpRange {
                name: Some("ranges".into()),
                learn_secs: 60,
                v4_prefix: 24,
                v6_prefix: 48,
            },
            RuleConfig::CodeSpike {
                name: Some("x".repeat(MAX_RULE_NAME)),
                codes: vec!["provider_timeout".into()],
                per: Per::App,
                threshold: 1,
                window_secs: 60,
                cooldown_secs: 0,
            },
        ];
        validate_tenant_rules(&rules).unwrap();
        validate_tenant_rules(&[]).unwrap();
        let most: Vec<RuleConfig> =
            (0..MAX_TENANT_RULES).map(|i| sig(&format!("r{i}"), Per::App, 1)).collect();
        validate_tenant_rules(&most).unwrap();
    }

    #[test]
    fn refuses_gauges() {
        let (i, r) = reason(&[
            sig("a", Per::App, 1),
            RuleConfig::GaugeAbove {
                name: Some("spill".into()),
                gauge: "audit_spill_bytes".into(),
                threshold: 1.0,
                cooldown_secs: 60,
            },
        ]);
        assert_eq!(i, 1);
        assert!(r.contains("gauge_above") && r.contains("operator only"), "{r}");
    }

    #[test]
    fn refuses_missing_empty_and_bad_names() {
        let unnamed = RuleConfig::Replays {
            name: None,
            per: Per::App,
            threshold: 1,
            window_secs: 60,
            cooldown_secs: 0,
        };
        assert_eq!(reason(&[unnamed]), (0, "a name is required".into()));
        assert_eq!(reason(&[sig("", Per::App, 1)]).1, "a name is required");
        for bad in ["with space", "slash/", "ünï", "semi;colon", "new\nline"] {
            let (i, r) = reason(&[sig("ok", Per::App, 1), sig(bad, Per::App, 1)]);
            assert_eq!(i, 1);
            assert!(r.starts_with("name must be 1 to 64 characters"), "{bad:?}: {r}");
            assert!(!r.contains(bad), "the bad name is not echoed");
        }
        let long = "n".repeat(MAX_RULE_NAME + 1);
        assert!(reason(&[sig(&long, Per::App, 1)]).1.starts_with("name must be"));
    }

    #[test]
    fn refuses_duplicate_names() {
        let (i, r) = reason(&[sig("a", Per::App, 1), sig("b", Per::Ip, 1), sig("a", Per::Ip, 2)]);
        assert_eq!((i, r.as_str()), (2, "duplicate name a"));
        // Names are case-sensitive.
        validate_tenant_rules(&[sig("a", Per::App, 1), sig("A", Per::App, 1)]).unwrap();
    }

    #[test]
    fn refuses_too_many_rules() {
        let many: Vec<RuleConfig> =
            (0..=MAX_TENANT_RULES).map(|i| sig(&format!("r{i}"), Per::App, 1)).collect();
        let (i, r) = reason(&many);
        assert_eq!(i, MAX_TENANT_RULES);
        assert!(r.contains("at most 50 rules"), "{r}");
    }

    #[test]
    fn refuses_what_the_engine_refuses() {
        assert!(reason(&[sig("zero", Per::App, 0)]).1.contains("threshold must be"));
        let long_window = RuleConfig::Replays {
            name: Some("w".into()),
            per: Per::App,
            threshold: 1,
            window_secs: 86_401,
            cooldown_secs: 0,
        };
        assert_eq!(reason(&[sig("ok", Per::App, 1), long_window]).0, 1);
        let no_codes = RuleConfig::CodeSpike {
            name: Some("c".into()),
            codes: vec![],
            per: Per::App,
            threshold: 1,
            window_secs: 60,
            cooldown_secs: 0,
        };
        assert_eq!(reason(&[no_codes]).1, "codes must not be empty");
        let prefix =
            RuleConfig::NewIpRange { name: Some("p".into()), learn_secs: 1, v4_prefix: 33, v6_prefix: 48 };
        assert_eq!(reason(&[prefix]).1, "prefix too long");
    }

    /// acme owns `shop`, globex owns `mart`; both have a per-app and a per-IP rule.
    fn two_tenants() -> TenantEngines {
        let mut e = TenantEngines::default();
        e.update(set(
            &TenantSet::default(),
            &[
                ("acme", vec![sig("by-app", Per::App, 2), sig("by-ip", Per::Ip, 2)]),
                ("globex", vec![sig("by-app", Per::App, 2), sig("by-ip", Per::Ip, 2)]),
            ],
            &[("shop", "acme"), ("mart", "globex")],
        ));
        e
    }

    #[test]
    fn a_tenant_engine_sees_only_its_apps() {
        let mut e = two_tenants();
        // Many failures from one IP on globex's app, on an unknown app and without an app.
        for t in 0..10 {
            for app in [Some("mart"), Some("unknown"), None] {
                let fired = e.observe(&ev(app, "192.0.2.1", "signature_mismatch"), t);
                assert!(fired.iter().all(|a| a.tenant.as_deref() == Some("globex")), "{fired:?}");
            }
        }
        // The same IP on acme's app: acme's per-IP count starts from zero.
        assert!(e.observe(&ev(Some("shop"), "192.0.2.1", "signature_mismatch"), 20).is_empty());
        assert!(e.observe(&ev(Some("shop"), "192.0.2.1", "signature_mismatch"), 21).is_empty());
        let fired = e.observe(&ev(Some("shop"), "192.0.2.1", "signature_mismatch"), 22);
        let mut got: Vec<(&str, &str, Option<&str>)> =
            fired.iter().map(|a| (a.rule.as_str(), a.subject.as_str(), a.tenant.as_deref())).collect();
        got.sort_unstable();
        assert_eq!(got, [("by-app", "shop", Some("acme")), ("by-ip", "192.0.2.1", Some("acme"))]);
    }

    #[test]
    fn unchanged_rules_keep_counts_changed_rules_reset_gone_tenants_drop() {
        let rules_a = vec![sig("by-app", Per::App, 2)];
        let mut e = TenantEngines::default();
        let s1 = set(&TenantSet::default(), &[("acme", rules_a.clone())], &[("shop", "acme")]);
        e.update(s1.clone());
        let fail = |app: &str| ev(Some(app), "198.51.100.1", "signature_mismatch");
        assert!(e.observe(&fail("shop"), 1).is_empty());
        assert!(e.observe(&fail("shop"), 2).is_empty());
        // Same rules (a new tenant and app appear): acme keeps its two failures.
        let s2 = set(
            &s1,
            &[("acme", rules_a.clone()), ("globex", vec![sig("g", Per::App, 1)])],
            &[("shop", "acme"), ("mart", "globex")],
        );
        e.update(s2.clone());
        assert_eq!(e.tenants(), ["acme", "globex"]);
        assert_eq!(e.observe(&fail("shop"), 3).len(), 1, "threshold reached across the update");
        // Changed rules: counting starts again.
        let s3 =
            set(&s2, &[("acme", vec![sig("by-app", Per::App, 1)])], &[("shop", "acme"), ("mart", "globex")]);
        e.update(s3.clone());
        assert_eq!(e.tenants(), ["acme"], "globex is gone");
        assert!(e.observe(&fail("shop"), 4).is_empty(), "reset: one failure is not above 1");
        assert_eq!(e.observe(&fail("shop"), 5).len(), 1);
        assert!(e.observe(&fail("mart"), 6).is_empty() && e.observe(&fail("mart"), 7).is_empty());
        // No tenants at all.
        e.update(set(&s3, &[], &[("shop", "acme")]));
        assert!(e.tenants().is_empty());
        assert!(e.observe(&fail("shop"), 8).is_empty());
    }

    #[test]
    fn refused_rules_are_off_and_judged_once() {
        let gauge = RuleConfig::GaugeAbove {
            name: Some("g".into()),
            gauge: "x".into(),
            threshold: 1.0,
            cooldown_secs: 1,
        };
        let s1 = set(
            &TenantSet::default(),
            &[("acme", vec![gauge.clone()]), ("globex", vec![sig("ok", Per::App, 1)])],
            &[("shop", "acme")],
        );
        assert!(s1.refused.contains("acme") && !s1.refused.contains("globex"));
        assert!(s1.active("acme").is_none() && s1.active("globex").is_some());
        let mut e = TenantEngines::default();
        e.update(s1.clone());
        assert_eq!(e.tenants(), ["globex"]);
        let s2 = set(&s1, &[("acme", vec![gauge]), ("globex", vec![sig("ok", Per::App, 1)])], &[]);
        assert!(s2.refused.contains("acme"), "unchanged: still refused");
        let s3 = set(&s2, &[("acme", vec![sig("fixed", Per::App, 1)])], &[]);
        assert!(s3.refused.is_empty());
    }

    fn alert(tenant: Option<&str>, n: u64) -> Alert {
        Alert {
            rule: "r".into(),
            kind: "count".into(),
            subject: "s".into(),
            count: n,
            window_secs: 60,
            at: n,
            message: format!("m{n}"),
            tenant: tenant.map(str::to_string),
        }
    }

    #[test]
    fn a_noisy_tenant_does_not_push_out_another_tenants_alerts() {
        let mut r = Recent::default();
        r.push(&alert(Some("quiet"), 0));
        for n in 1..=200 {
            r.push(&alert(Some("noisy"), n));
            r.push(&alert(None, n));
        }
        assert_eq!(r.all().len(), crate::RECENT);
        assert_eq!(r.all()[0], alert(None, 200), "newest first");
        assert_eq!(r.tenant("quiet"), (vec![alert(Some("quiet"), 0)], 1));
        let (noisy, fired) = r.tenant("noisy");
        assert_eq!((noisy.len(), fired, noisy[0].count), (crate::RECENT, 200, 200));
        assert_eq!(r.tenant("nobody"), (vec![], 0));
        // Bounded: the tenant with the oldest newest alert is forgotten first.
        for t in 0..MAX_TRACKED_TENANTS {
            r.push(&alert(Some(&format!("t{t}")), 0));
        }
        assert_eq!(r.tenants.len(), MAX_TRACKED_TENANTS);
        assert_eq!(r.tenant("quiet").1, 0, "quiet was the least recent");
        assert_eq!(r.tenant("noisy").1, 0);
        assert_eq!(r.tenant("t0").1, 1);
    }
}
