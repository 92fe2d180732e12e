// Cost of turning a finished request into an audit record on the request path (id + owned
// record) and of encoding it as a spill frame (JSON + CRC-32), the writer's per-record work
// while the database is down.
#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keygate_audit::{new_id, spill::crc32, AuditRecord};

fn record() -> AuditRecord {
    AuditRecord {
        id: new_id(1_800_000_000_000),
        at_ms: 1_800_000_000_000,
        request_id: "0123456789abcdef".into(),
        direction: "inbound".into(),
        app: Some("shop".into()),
        key_id: Some("AKIDEXAMPLE000001".into()),
        scheme: Some("kg1-hmac-sha256".into()),
        client_ip: "203.0.113.7".into(),
        method: "POST".into(),
        route: "/api".into(),
        path: "/api/v1/orders/12345".into(),
        status: 200,
        code: "ok".into(),
        latency_us: 420,
        upstream_latency_us: Some(300),
        bytes_in: 1024,
        bytes_out: 256,
        request_body: None,
        response_body: None,
        headers: None,
    }
}

fn bench(c: &mut Criterion) {
    c.bench_function("audit: new record (id + owned fields)", |b| b.iter(|| black_box(record())));
    let r = record();
    c.bench_function("audit: encode spill frame (JSON + CRC-32)", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(black_box(&r)).unwrap();
            black_box(crc32(&json));
            json.len()
        })
    });
    c.bench_function("audit: mask a 1 KiB JSON body", |b| {
        let body = format!(
            r#"{{"card":"4111111111111111","items":[{}],"cvv":"123"}}"#,
            r#"{"sku":"abc","qty":1},"#.repeat(40).trim_end_matches(',')
        );
        let fields = vec!["card".to_string(), "cvv".to_string()];
        b.iter(|| {
            keygate_audit::mask::body_for_audit(
                Some("application/json"),
                black_box(body.as_bytes()),
                &fields,
                4096,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
