//! Response streaming on [`Client`]: `invoke_with_response_stream` returns the events of one
//! invocation as the function sends them.
use crate::{v1, Client, Error};

/// The events of a streamed invocation, as they arrive: payload chunks, then one
/// [`StreamEvent::Complete`].
pub struct InvokeStream {
    inner: tonic::Streaming<v1::InvokeWithResponseStreamResponse>,
}

/// One event of a streamed invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the response, as the function streamed it.
    Chunk(Vec<u8>),
    /// The invocation is over: `function_error` / `error_code` / `error_details` say whether
    /// and how it failed (the chunks before it may be a partial response).
    Complete(v1::InvokeComplete),
}

impl InvokeStream {
    /// The next event; `None` after [`StreamEvent::Complete`]. A worker lost mid-invocation is an
    /// [`Error::Api`] (`UNAVAILABLE`).
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, Error> {
        use v1::invoke_with_response_stream_response::Event;
        loop {
            let Some(msg) = self.inner.message().await? else {
                return Ok(None);
            };
            match msg.event {
                Some(Event::PayloadChunk(c)) => return Ok(Some(StreamEvent::Chunk(c))),
                Some(Event::InvokeComplete(c)) => return Ok(Some(StreamEvent::Complete(c))),
                None => continue,
            }
        }
    }
}

impl Client {
    /// Invokes synchronously with the response streamed (Lambda's InvokeWithResponseStream): the
    /// chunks come as the function sends them (a function that does not stream sends one chunk).
    /// `req.invocation_type` must be `REQUEST_RESPONSE`. Errors before the function runs (not
    /// found, throttled, no worker) are returned here.
    pub async fn invoke_with_response_stream(
        &self,
        req: v1::InvokeRequest,
    ) -> Result<InvokeStream, Error> {
        let inner = self
            .functions
            .clone()
            .invoke_with_response_stream(req)
            .await?
            .into_inner();
        Ok(InvokeStream { inner })
    }
}
