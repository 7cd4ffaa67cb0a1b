//! A minimal HTTP/1 server on hyper whose handlers may close the connection without answering,
//! which `axum::serve` cannot do (a handler there must produce a response).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// A handler's verdict: an answer, or `Err(NoAnswer)` to close the connection without one.
pub(crate) type Verdict = Result<Response<Body>, NoAnswer>;

/// Closing the connection without an answer (hyper drops a connection whose service fails).
#[derive(Debug)]
pub(crate) struct NoAnswer;

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed without an answer on purpose")
    }
}

impl std::error::Error for NoAnswer {}

/// A running server; stops (and closes every open connection) when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<Infallible>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds 127.0.0.1 on a free port and serves every connection with `handler`. With
/// `reset_on_close`, closing a connection sends a TCP RST instead of a FIN (`SO_LINGER` 0).
pub(crate) async fn start<H, F>(reset_on_close: bool, handler: H) -> std::io::Result<Server>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Verdict> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Connections live in the set so that stopping the server closes them too (a hanging
        // fake would otherwise keep its sockets open forever).
        let mut connections = JoinSet::new();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "fault proxy accept failed");
                    continue;
                }
            };
            if reset_on_close {
                let _ = stream.set_zero_linger();
            }
            while connections.try_join_next().is_some() {}
            let handler = handler.clone();
            connections.spawn(async move {
                let service = service_fn(handler);
                // An error here is either a deliberate `NoAnswer` or the client going away.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Server { addr, task })
}
