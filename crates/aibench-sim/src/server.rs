//! The listener: HTTP/1.1 keep-alive connections, one task each, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::App;
use crate::{http, SimConfig};

/// Pending connections the kernel queues before `accept` (many clients start at once).
const BACKLOG: u32 = 4096;

/// A bound simulated server; call [`SimServer::serve`] to answer requests.
pub struct SimServer {
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<App>,
    engine: Option<std::thread::JoinHandle<()>>,
}

impl SimServer {
    /// Check the settings, bind `addr` (port 0 = any free port) and start the timing back end.
    pub async fn bind(config: SimConfig, addr: SocketAddr) -> anyhow::Result<SimServer> {
        config.validate()?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("could not create a TCP socket")?;
        socket
            .set_reuseaddr(true)
            .context("could not set SO_REUSEADDR")?;
        socket.bind(addr).with_context(|| {
            format!("could not bind {addr}: is another server on that port? pick a free one with --port")
        })?;
        let listener = socket
            .listen(BACKLOG)
            .with_context(|| format!("could not listen on {addr}"))?;
        let addr = listener
            .local_addr()
            .context("could not read the bound address")?;
        let (app, engine) =
            App::new(config).context("could not start the fixed-timing pacer thread")?;
        let engine = match engine {
            Some(engine) => Some(
                std::thread::Builder::new()
                    .name("aibench-sim-engine".into())
                    .spawn(move || engine.run())
                    .context("could not start the engine thread")?,
            ),
            None => None,
        };
        Ok(SimServer {
            listener,
            addr,
            app: Arc::new(app),
            engine,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model name the server answers to.
    pub fn model(&self) -> &str {
        &self.app.config.model
    }

    /// Serve until `shutdown` resolves; then stop accepting, let in-flight responses finish for
    /// up to `--shutdown-grace`, and cut the rest.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let SimServer {
            listener,
            app,
            engine,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        connections.spawn(serve_connection(app.clone(), stream, stop_rx.clone()));
                    }
                    // Out of file descriptors or a connection reset before accept: keep going.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let grace = app.config.shutdown_grace.0;
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drained).await.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        // The last handle on the state goes: the engine sees its queue close and stops, and
        // the pacer thread is stopped and joined.
        drop(app);
        if let Some(engine) = engine {
            let _ = tokio::task::spawn_blocking(move || engine.join()).await;
        }
        Ok(())
    }
}

async fn serve_connection(app: Arc<App>, stream: TcpStream, mut stop: watch::Receiver<bool>) {
    // Tokens are small writes that must leave at once.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(http::handle(app, req).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Raise this process's soft limit on open files to its hard limit, so that thousands of
/// concurrent connections fit (many systems start processes at 1024). Returns the soft limit
/// in force afterwards; when raising fails the old limit stays.
#[cfg(unix)]
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads only the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // `rlim_t` is not 64 bits on every platform.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(limit.rlim_cur))
}
