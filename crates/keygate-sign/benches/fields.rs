// Costs of encrypted fields (keygate_sign::fields): RSA-OAEP decryption at 2048 and 3072 bits,
// hybrid decryption of 1 KiB and 64 KiB values, direct encryption, and a whole body with three
// encrypted fields. Issue 10's target: RSA-2048 OAEP decrypt ≤ 1 ms.
// Must not measure key generation or anything outside this crate.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate_sign::fields::{
    decrypt_json_fields, decrypt_value, encrypt_value, FieldKeyPair, FieldPath, Mode,
};

const MAX: usize = 1 << 20;

fn bench_fields(c: &mut Criterion) {
    let k2048 = FieldKeyPair::generate(2048).expect("RSA-2048 key");
    let k3072 = FieldKeyPair::generate(3072).expect("RSA-3072 key");
    let keys2048 = |kid: &str| (kid == "v1").then_some(&k2048);
    let keys3072 = |kid: &str| (kid == "v1").then_some(&k3072);
    let pan = br#""4111111111111111""#;

    let mut g = c.benchmark_group("fields");
    let direct2048 = encrypt_value(k2048.public_key(), "v1", pan, Mode::Direct).expect("encrypt");
    g.bench_function("decrypt direct RSA-2048 (18 B field)", |b| {
        b.iter(|| decrypt_value(black_box(&direct2048), &keys2048, MAX).expect("opens"))
    });
    let direct3072 = encrypt_value(k3072.public_key(), "v1", pan, Mode::Direct).expect("encrypt");
    g.bench_function("decrypt direct RSA-3072 (18 B field)", |b| {
        b.iter(|| decrypt_value(black_box(&direct3072), &keys3072, MAX).expect("opens"))
    });
    for size in [1024usize, 65_536] {
        let plain: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let env = encrypt_value(k2048.public_key(), "v1", &plain, Mode::Hybrid).expect("encrypt");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("decrypt hybrid RSA-2048 ({} KiB)", size / 1024), |b| {
            b.iter(|| decrypt_value(black_box(&env), &keys2048, MAX).expect("opens"))
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("encrypt direct RSA-2048 (18 B field)", |b| {
        b.iter(|| encrypt_value(k2048.public_key(), "v1", black_box(pan), Mode::Direct).expect("encrypt"))
    });
    let body = format!(
        r#"{{"order_id":"A-1001","amount":"88.80","card":{{"number":"{}","exp":"{}"}},"items":[{{"sku":"X1","qty":2}}],"holder":"{}"}}"#,
        encrypt_value(k2048.public_key(), "v1", pan, Mode::Auto).expect("encrypt"),
        encrypt_value(k2048.public_key(), "v1", br#""12/30""#, Mode::Auto).expect("encrypt"),
        encrypt_value(k2048.public_key(), "v1", r#"{"first":"Ana","last":"Müller"}"#.as_bytes(), Mode::Auto)
            .expect("encrypt"),
    );
    let paths: Vec<FieldPath> =
        ["card.number", "card.exp", "holder"].iter().map(|p| FieldPath::parse(p).expect("path")).collect();
    g.bench_function("decrypt_json_fields, 3 direct fields RSA-2048", |b| {
        b.iter(|| decrypt_json_fields(black_box(body.as_bytes()), &paths, &keys2048, MAX).expect("opens"))
    });
    g.finish();
}

criterion_group!(benches, bench_fields);
criterion_main!(benches);
