//! Outbound HTTP from a component: `allowed_outbound_hosts` is enforced, and
//! `http://<component>.spin.internal/...` is Spin local service chaining: the
//! request goes straight to that component in this process, no socket.
//! Other requests go out on kept-alive connections (`connections`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::allowed_hosts::split_url;
use crate::app::App;
use crate::state::ComponentInfo;

const CHAINING_SUFFIX: &str = ".spin.internal";

pub struct OutboundHttp {
    pub app: Arc<App>,
    pub component: Arc<ComponentInfo>,
    /// The calling run is background work (see `RequestState::background`).
    pub background: bool,
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let app = self.app.clone();
        let component = self.component.clone();
        let background = self.background;
        Box::new(async move {
            let url = request.uri().to_string();
            let (scheme, host, port) = split_url(&url).map_err(|_| Error::HttpRequestUriInvalid)?;
            if !component.allowed_hosts.allows(&scheme, &host, port) {
                tracing::warn!(
                    component = %component.name,
                    %scheme, %host,
                    "outbound request refused: not in allowed_outbound_hosts"
                );
                return Err(Error::HttpRequestDenied);
            }
            let done = Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>;
            if let Some(target) = host.strip_suffix(CHAINING_SUFFIX) {
                let response = app.invoke_chained(target, request, background).await?;
                return Ok((response, done));
            }
            let options = with_default_timeouts(options, app.outbound_timeout);
            let response = app.connections.send(request, &options).await?;
            Ok((response, done))
        })
    }
}

/// A guest that sets no timeouts still gets bounded waits.
fn with_default_timeouts(options: Option<RequestOptions>, timeout: Duration) -> RequestOptions {
    let mut o = options.unwrap_or_default();
    o.connect_timeout
        .get_or_insert(Duration::from_secs(10).min(timeout));
    o.first_byte_timeout.get_or_insert(timeout);
    o.between_bytes_timeout.get_or_insert(timeout);
    o
}
