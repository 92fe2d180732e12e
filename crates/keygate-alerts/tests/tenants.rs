// Tenant-owned rules through the running pipeline: reloads keep or reset counts, views are
// per tenant, `wants` follows the tenants' codes. No channels: alerts are only kept and logged.
// Waits are bounded; a marker rule of the operator tells when the queue has been processed.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use keygate_alerts::{Alerts, AlertsConfig, Event, Per, Retry, RuleConfig};
use serde_json::json;

/// An operator rule firing on every second `sync_marker` outcome of an app: see [`sync`].
fn marker_rule() -> RuleConfig {
    RuleConfig::CodeSpike {
        name: Some("sync".into()),
        codes: vec!["sync_marker".into()],
        per: Per::App,
        threshold: 1,
        window_secs: 60,
        cooldown_secs: 0,
    }
}

fn start(extra: Vec<RuleConfig>) -> Alerts {
    let mut rules = vec![marker_rule()];
    rules.extend(extra);
    let cfg = AlertsConfig { rules, channels: vec![], max_per_minute: 1000 };
    Alerts::start(cfg, Retry::default()).unwrap()
}

fn event(app: Option<&str>, ip: &str, code: &str) -> Event {
    Event { app: app.map(str::to_string), ip: ip.parse().unwrap(), code: code.into() }
}

fn fail(a: &Alerts, app: &str, ip: &str) {
    a.record(event(Some(app), ip, "signature_mismatch"));
}

/// Returns once everything recorded before it has been evaluated: the queue is processed in
/// order, so when the marker alert for `sync-{n}` is there, so is the effect of earlier events.
async fn sync(a: &Alerts, n: u32) {
    let app = format!("sync-{n}");
    a.record(event(Some(&app), "127.0.0.1", "sync_marker"));
    a.record(event(Some(&app), "127.0.0.1", "sync_marker"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let recent = a.view()["recent"].clone();
        if recent.as_array().unwrap().iter().any(|r| r["subject"] == app.as_str()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "queue not processed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn sig(name: &str, per: Per, threshold: u32, window_secs: u64, cooldown_secs: u64) -> RuleConfig {
    RuleConfig::SignatureFailures { name: Some(name.into()), per, threshold, window_secs, cooldown_secs }
}

fn map<V: Clone>(entries: &[(&str, V)]) -> HashMap<String, V> {
    entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn tenant_rules(entries: &[(&str, Vec<RuleConfig>)]) -> HashMap<String, Vec<RuleConfig>> {
    map(entries)
}

fn apps(entries: &[(&str, &str)]) -> HashMap<String, String> {
    entries.iter().map(|(a, t)| (a.to_string(), t.to_string())).collect()
}

fn fired(a: &Alerts, tenant: &str) -> u64 {
    a.view_for_tenant(tenant)["stats"]["fired"].as_u64().unwrap()
}

#[tokio::test]
async fn tenant_counts_survive_an_unchanged_reload_and_reset_on_change() {
    let a = start(vec![]);
    let slow = vec![sig("slow", Per::App, 2, 60, 600)];
    a.set_tenant_rules(tenant_rules(&[("acme", slow.clone())]), apps(&[("shop", "acme")]));
    fail(&a, "shop", "192.0.2.1");
    fail(&a, "shop", "192.0.2.2");
    sync(&a, 1).await;
    assert_eq!(fired(&a, "acme"), 0);

    // A reload with acme's rules unchanged (another tenant and app appear; the same input
    // again is a no-op): acme keeps its two failures, and the third fires.
    let globex = vec![sig("g", Per::App, 1, 60, 600)];
    for _ in 0..3 {
        a.set_tenant_rules(
            tenant_rules(&[("acme", slow.clone()), ("globex", globex.clone())]),
            apps(&[("shop", "acme"), ("mart", "globex")]),
        );
    }
    fail(&a, "shop", "192.0.2.3");
    sync(&a, 2).await;
    assert_eq!(fired(&a, "acme"), 1, "threshold reached across the reload");
    let v = a.view_for_tenant("acme");
    assert_eq!(
        (&v["recent"][0]["rule"], &v["recent"][0]["tenant"], &v["recent"][0]["count"]),
        (&json!("slow"), &json!("acme"), &json!(3))
    );

    // Changed rules (a longer window) start from zero: the old engine was in its cooldown and
    // would never fire again; the new one fires at its third failure, not before.
    let slower = vec![sig("slow", Per::App, 2, 120, 600)];
    a.set_tenant_rules(
        tenant_rules(&[("acme", slower.clone()), ("globex", globex.clone())]),
        apps(&[("shop", "acme"), ("mart", "globex")]),
    );
    fail(&a, "shop", "192.0.2.1");
    fail(&a, "shop", "192.0.2.1");
    sync(&a, 3).await;
    assert_eq!(fired(&a, "acme"), 1, "counting restarted");
    fail(&a, "shop", "192.0.2.1");
    sync(&a, 4).await;
    assert_eq!(fired(&a, "acme"), 2);
    assert_eq!(a.view_for_tenant("acme")["recent"][0]["window_secs"], 120);

    // acme disappears: its rules are dropped (globex's stay).
    a.set_tenant_rules(
        tenant_rules(&[("globex", globex.clone())]),
        apps(&[("shop", "acme"), ("mart", "globex")]),
    );
    for _ in 0..5 {
        fail(&a, "shop", "192.0.2.1");
    }
    fail(&a, "mart", "192.0.2.1");
    fail(&a, "mart", "192.0.2.1");
    sync(&a, 5).await;
    assert_eq!(fired(&a, "acme"), 2, "no rules any more");
    assert_eq!(a.view_for_tenant("acme")["rules"], json!([]));
    assert_eq!(fired(&a, "globex"), 1);
    assert_eq!(a.view()["tenant_rules"], json!({ "globex": globex }));
}

#[tokio::test]
async fn wants_follows_the_tenants_codes() {
    let a = start(vec![]);
    assert!(a.wants("sync_marker"));
    for code in ["ok", "signature_mismatch", "nonce_replayed", "provider_timeout"] {
        assert!(!a.wants(code), "{code}");
    }
    a.set_tenant_rules(
        tenant_rules(&[
            (
                "acme",
                vec![RuleConfig::NewIpRange {
                    name: Some("ranges".into()),
                    learn_secs: 60,
                    v4_prefix: 24,
                    v6_prefix: 48,
                }],
            ),
            (
                "globex",
                vec![RuleConfig::CodeSpike {
                    name: Some("upstream".into()),
                    codes: vec!["provider_timeout".into()],
                    per: Per::App,
                    threshold: 3,
                    window_secs: 60,
                    cooldown_secs: 60,
                }],
            ),
        ]),
        apps(&[]),
    );
    assert!(a.wants("ok") && a.wants("provider_timeout") && a.wants("sync_marker"));
    assert!(!a.wants("signature_mismatch") && !a.wants("nonce_replayed"));
    a.set_tenant_rules(tenant_rules(&[("acme", vec![sig("s", Per::Ip, 1, 60, 60)])]), apps(&[]));
    assert!(a.wants("signature_mismatch") && a.wants("sync_marker"));
    assert!(!a.wants("ok") && !a.wants("provider_timeout"));
    a.set_tenant_rules(HashMap::new(), HashMap::new());
    assert!(!a.wants("signature_mismatch") && a.wants("sync_marker"));
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_alerts() {
    // The operator counts every failure per IP; the tenants count theirs.
    let a = start(vec![sig("operator", Per::Ip, 1, 60, 0)]);
    let acme = vec![sig("acme-ip", Per::Ip, 1, 60, 0)];
    let globex = vec![sig("globex-app", Per::App, 1, 60, 0)];
    a.set_tenant_rules(
        tenant_rules(&[("acme", acme.clone()), ("globex", globex.clone())]),
        apps(&[("shop", "acme"), ("mart", "globex")]),
    );
    // One IP fails on globex's app, on an unknown app and without an app: acme's per-IP rule
    // never counts it.
    for _ in 0..5 {
        fail(&a, "mart", "198.51.100.1");
        fail(&a, "unknown", "198.51.100.1");
        a.record(event(None, "198.51.100.1", "signature_mismatch"));
    }
    sync(&a, 1).await;
    assert_eq!(fired(&a, "acme"), 0);
    assert_eq!(fired(&a, "globex"), 4);
    // The same IP on acme's app: acme's count starts at one.
    fail(&a, "shop", "198.51.100.1");
    sync(&a, 2).await;
    assert_eq!(fired(&a, "acme"), 0);
    fail(&a, "shop", "198.51.100.1");
    sync(&a, 3).await;
    assert_eq!(fired(&a, "acme"), 1);

    let v = a.view_for_tenant("acme");
    assert_eq!(v["rules"], serde_json::to_value(&acme).unwrap());
    assert_eq!(v["stats"], json!({ "fired": 1 }), "only the tenant's own count");
    assert!(v.get("channels").is_none() && v.get("tenant_rules").is_none());
    let recent = v["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!((&recent[0]["rule"], &recent[0]["tenant"]), (&json!("acme-ip"), &json!("acme")));
    let g = a.view_for_tenant("globex");
    assert!(g["recent"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["tenant"] == "globex" && r["subject"] == "mart"));
    let nobody = a.view_for_tenant("nobody");
    assert_eq!(nobody, json!({ "rules": [], "stats": { "fired": 0 }, "recent": [] }));

    // The operator sees everything, tenant alerts included, and every tenant's rules.
    let op = a.view();
    assert!(op.get("channels").is_some());
    assert_eq!(op["tenant_rules"], json!({ "acme": acme, "globex": globex }));
    let recent = op["recent"].as_array().unwrap();
    assert!(recent.iter().any(|r| r["rule"] == "operator" && r.get("tenant").is_none()));
    assert!(recent.iter().any(|r| r["tenant"] == "acme") && recent.iter().any(|r| r["tenant"] == "globex"));
}

#[tokio::test]
async fn invalid_tenant_rules_are_skipped_not_fatal() {
    let a = start(vec![]);
    let gauge = RuleConfig::GaugeAbove {
        name: Some("spill".into()),
        gauge: "audit_spill_bytes".into(),
        threshold: 1.0,
        cooldown_secs: 60,
    };
    let unnamed = RuleConfig::SignatureFailures {
        name: None,
        per: Per::App,
        threshold: 1,
        window_secs: 60,
        cooldown_secs: 0,
    };
    a.set_tenant_rules(
        tenant_rules(&[
            ("acme", vec![gauge]),
            ("initech", vec![unnamed]),
            ("globex", vec![sig("ok", Per::App, 1, 60, 0)]),
        ]),
        apps(&[("shop", "acme"), ("office", "initech"), ("mart", "globex")]),
    );
    a.gauge("audit_spill_bytes", 1e9);
    for app in ["shop", "office", "mart"] {
        fail(&a, app, "192.0.2.1");
        fail(&a, app, "192.0.2.1");
    }
    sync(&a, 1).await;
    assert_eq!((fired(&a, "acme"), fired(&a, "initech"), fired(&a, "globex")), (0, 0, 1));
    assert_eq!(a.view_for_tenant("acme")["rules"], json!([]));
    assert_eq!(a.view()["tenant_rules"].as_object().unwrap().len(), 1);
}
