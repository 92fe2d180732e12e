// Request bodies: read once under a size limit while hashing, then forwarded from the same
// chunks (no second buffer). Response bodies: a boxed stream so upstream trailers pass through.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use keygate_sign::digest::BodyHasher;

use crate::error::GatewayError;

/// Error type carried by bodies on both sides of the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body of every response the data plane sends and every request it forwards.
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// A complete body in memory.
pub fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A request body read in full: its chunks, trailers and SHA-256.
#[derive(Debug, Default)]
pub struct BufferedBody {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    len: u64,
}

/// SHA-256 of the empty body, lowercase hex.
const EMPTY_SHA256_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Reads `body` to the end, refusing more than `limit` bytes, hashing as it goes.
pub async fn read_limited<B>(mut body: B, limit: u64) -> Result<(BufferedBody, String), GatewayError>
where
    B: Body<Data = Bytes> + Unpin,
{
    // Bodiless requests (most GETs) skip the hasher and the frame loop.
    if body.is_end_stream() {
        return Ok((BufferedBody::default(), EMPTY_SHA256_HEX.to_string()));
    }
    let mut out = BufferedBody::default();
    let mut hasher = BodyHasher::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| GatewayError::BodyRead)?;
        match frame.into_data() {
            Ok(data) => {
                out.len += data.len() as u64;
                if out.len > limit {
                    return Err(GatewayError::BodyTooLarge { limit });
                }
                hasher.update(&data);
                if !data.is_empty() {
                    out.chunks.push_back(data);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    out.trailers = Some(t);
                }
            }
        }
    }
    Ok((out, hasher.finish()))
}

impl BufferedBody {
    /// A body made of `bytes` (e.g. after decrypting fields), without trailers.
    pub fn from_bytes(bytes: Bytes) -> Self {
        let len = bytes.len() as u64;
        let mut chunks = VecDeque::new();
        if !bytes.is_empty() {
            chunks.push_back(bytes);
        }
        Self { chunks, trailers: None, len }
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body as one contiguous slice; copies only when it arrived in several chunks.
    pub fn contiguous(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.chunks.len() {
            0 => std::borrow::Cow::Borrowed(&[]),
            1 => std::borrow::Cow::Borrowed(&self.chunks[0][..]),
            _ => std::borrow::Cow::Owned(self.chunks.iter().flat_map(|c| c.iter().copied()).collect()),
        }
    }
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let remaining: u64 = self.chunks.iter().map(|c| c.len() as u64).sum();
        SizeHint::with_exact(remaining)
    }
}

/// Reads frames until the body ends or more than `limit` bytes arrived. Returns the bytes read
/// and, when the limit was passed, the rest of the body still to be streamed.
pub async fn collect_up_to(mut body: ResponseBody, limit: usize) -> (Bytes, Option<ResponseBody>) {
    let mut buf = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => return (buf.freeze(), None),
            Some(Err(e)) => {
                // Hand the error on to the client as a body error, after what arrived so far.
                return (buf.freeze(), Some(BodyExt::boxed(OneFrame(Some(Err(e))))));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > limit {
                        return (buf.freeze(), Some(body));
                    }
                }
                Err(frame) => {
                    // Trailers end the body; keep them by streaming them after the data.
                    return (buf.freeze(), Some(BodyExt::boxed(OneFrame(Some(Ok(frame))))));
                }
            },
        }
    }
}

/// `head` followed by everything `rest` still yields (data and trailers).
pub fn chain(head: Bytes, rest: ResponseBody) -> ResponseBody {
    BodyExt::boxed(Chain { head: Some(head), rest })
}

struct Chain {
    head: Option<Bytes>,
    rest: ResponseBody,
}

impl Body for Chain {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            if !head.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// A body of at most one frame (or one error), for handing a read-ahead frame back.
struct OneFrame(Option<Result<Frame<Bytes>, BoxError>>);

impl Body for OneFrame {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_body_hashes_like_the_hasher() {
        let (b, h) = read_limited(http_body_util::Empty::<Bytes>::new(), 10).await.unwrap();
        assert!(b.is_empty());
        assert_eq!(h, BodyHasher::new().finish());
        let (_, h2) = read_limited(crate::body::full(Bytes::new()), 10).await.unwrap();
        assert_eq!(h2, h);
    }
}
