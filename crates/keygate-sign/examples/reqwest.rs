//! Calling a keygate-protected API from Rust with reqwest.
//!
//! Start the demo gateway (`cargo run --release -- serve --demo`), then:
//!
//! ```sh
//! KEYGATE_SECRET_KEY=$(cat keygate-demo/demo.secret) \
//!   cargo run -p keygate-sign --example reqwest -- AKDEMO0000000001 'http://127.0.0.1:8080/hello?name=world'
//! ```
//!
//! The body is signed exactly as sent: sign the bytes, then send the same bytes.

use http::{HeaderMap, HeaderValue};
use keygate_sign::Signer;
use secrecy::SecretBox;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let access_key = args.next().ok_or("usage: reqwest ACCESS_KEY URL")?;
    let url = args.next().ok_or("usage: reqwest ACCESS_KEY URL")?;
    let secret = std::env::var("KEYGATE_SECRET_KEY").map_err(|_| "set KEYGATE_SECRET_KEY")?;
    let signer = Signer::new(access_key, SecretBox::new(secret.into_bytes().into_boxed_slice()))
        .with_signed_headers(["host", "content-type"])?;

    let body = br#"{"hello":"keygate"}"#.to_vec();
    let parsed: http::Uri = url.parse()?;
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::HOST,
        HeaderValue::from_str(parsed.authority().ok_or("URL needs a host")?.as_str())?,
    );
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    signer.sign("POST", &url, &headers, &body)?.apply(&mut headers);

    let resp = reqwest::Client::new().post(&url).headers(headers).body(body).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    #[allow(clippy::print_stdout)]
    {
        println!("{status}\n{text}");
    }
    Ok(())
}
