//! Tracing for every component: a `tracing` subscriber (readable logs, or JSON with
//! `PGFLEET_LOG_FORMAT=json`; `RUST_LOG` filters) and, when an OTLP endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, or explicitly), an OpenTelemetry layer exporting spans over
//! OTLP/HTTP (protobuf) with `service.name` set per component. The other standard `OTEL_*`
//! variables are honoured by the exporter. Spans are flushed when the guard is dropped.
//!
//! Trace context crosses the queue: [`trace_metadata`] captures the current span's W3C
//! `traceparent` for a job's metadata at enqueue; [`parent_from_metadata`] restores it as the
//! parent of the worker's job span.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{json, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and stops span export when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every finished span now (tests, shutdown).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber for `service` (gateway, worker, controller, dev), exporting
/// spans to `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set.
pub fn init(service: &str) -> TelemetryGuard {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    init_with(service, endpoint.as_deref())
}

/// Like [`init`] with an explicit OTLP/HTTP endpoint (`http://host:4318`), or none. A second
/// call in the same process keeps the first subscriber.
pub fn init_with(service: &str, otlp_endpoint: Option<&str>) -> TelemetryGuard {
    // rustls picks its crypto provider from its enabled features; when a build enables two
    // (ring through reqwest and kube, aws-lc-rs through another crate), it picks none and the
    // first TLS client panics. Install one, explicitly, before any client is built.
    install_crypto_provider();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("PGFLEET_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    let provider = otlp_endpoint.and_then(|endpoint| match provider(service, endpoint) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("OTLP export disabled: {e}");
            None
        }
    });
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    TelemetryGuard { provider }
}

fn provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| e.to_string())?;
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The current span's W3C trace context as job metadata (`{"traceparent": ...}`), or `None`
/// when there is no sampled trace.
pub fn trace_metadata() -> Option<Value> {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let tp = carrier.get("traceparent")?;
    let mut m = json!({ "traceparent": tp });
    if let Some(ts) = carrier.get("tracestate").filter(|s| !s.is_empty()) {
        m["tracestate"] = json!(ts);
    }
    Some(m)
}

/// The trace context stored in a job's metadata, to set as the parent of its span.
pub fn parent_from_metadata(metadata: &Value) -> Option<opentelemetry::Context> {
    let tp = metadata.get("traceparent")?.as_str()?;
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert("traceparent".into(), tp.to_owned());
    if let Some(ts) = metadata.get("tracestate").and_then(Value::as_str) {
        carrier.insert("tracestate".into(), ts.to_owned());
    }
    Some(TraceContextPropagator::new().extract(&carrier))
}

/// The trace context of an incoming request's `traceparent` / `tracestate` headers.
pub fn parent_from_headers<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> opentelemetry::Context {
    let carrier: HashMap<String, String> = headers
        .filter(|(k, _)| {
            k.eq_ignore_ascii_case("traceparent") || k.eq_ignore_ascii_case("tracestate")
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of `parent` (no-op without OpenTelemetry).
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    let _ = span.set_parent(parent);
}

/// Makes ring the process's rustls crypto provider (a no-op when one is already installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
