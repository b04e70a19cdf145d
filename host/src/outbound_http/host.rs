//! The `wasi:http` outgoing-handler hooks.

use std::future::Future;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{OutboundHttp, CHAINING_SUFFIX};
use crate::allowed_hosts::split_url;

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
        let component = self.component.clone();
        let allowed_hosts = self.allowed_hosts.clone();
        let chain = self.chain.clone();
        let connections = self.connections.clone();
        let timeout = self.timeout;
        let background = self.background;
        Box::new(async move {
            let url = request.uri().to_string();
            let (scheme, host, port) = split_url(&url).map_err(|_| Error::HttpRequestUriInvalid)?;
            if !allowed_hosts.allows(&scheme, &host, port) {
                tracing::warn!(
                    %component,
                    %scheme, %host,
                    "outbound request refused: not in allowed_outbound_hosts"
                );
                return Err(Error::HttpRequestDenied);
            }
            let done = Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>;
            if let Some(target) = host.strip_suffix(CHAINING_SUFFIX) {
                let response = chain.chain(target.to_string(), request, background).await?;
                return Ok((response, done));
            }
            let options = with_default_timeouts(options, timeout);
            let response = connections.send(request, &options).await?;
            Ok((response, done))
        })
    }
}

/// A guest that sets no timeouts still gets bounded waits.
pub(super) fn with_default_timeouts(
    options: Option<RequestOptions>,
    timeout: Duration,
) -> RequestOptions {
    let mut o = options.unwrap_or_default();
    o.connect_timeout
        .get_or_insert(Duration::from_secs(10).min(timeout));
    o.first_byte_timeout.get_or_insert(timeout);
    o.between_bytes_timeout.get_or_insert(timeout);
    o
}
