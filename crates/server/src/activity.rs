//! What the web admin and the REST API show of the server's recent work:
//!
//! - [`Activity`]: the last log events of the mail's path (SMTP sessions, the pipeline,
//!   delivery) — accepted and refused messages, deliveries, bounces, deferrals — kept in
//!   memory by a `tracing` layer ([`ActivityLayer`]) and searchable by address, queue id or
//!   message id. The lines are the log's own: what `journalctl` shows, the page shows.
//! - [`MetricHistory`]: samples of the Prometheus counters taken every [`SAMPLE_EVERY`], so
//!   the dashboard's rates come from the same counters as `/metrics`.

use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Events kept (the newest; about 2 MB at 400 bytes each).
pub const ACTIVITY_CAPACITY: usize = 5_000;

/// Where events of these crates go: the mail's path.
const TARGETS: [&str; 3] = ["tern_smtp", "tern_pipeline", "tern_delivery"];

/// One log event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivityEntry {
    /// Unix seconds.
    pub time: i64,
    /// `info`, `warn` or `error`.
    pub level: &'static str,
    /// Which part of the server: `smtp`, `pipeline` or `delivery`.
    pub source: &'static str,
    pub message: String,
    /// The event's fields and its session's (`client`, `sid`), as `key=value` pairs.
    pub fields: String,
}

/// The last [`ACTIVITY_CAPACITY`] events.
#[derive(Default)]
pub struct Activity {
    entries: Mutex<VecDeque<ActivityEntry>>,
}

impl Activity {
    /// The process's one log (the tracing layer writes to it).
    pub fn global() -> &'static Activity {
        static GLOBAL: OnceLock<Activity> = OnceLock::new();
        GLOBAL.get_or_init(Activity::default)
    }

    pub fn push(&self, entry: ActivityEntry) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() == ACTIVITY_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The newest entries first, at most `limit`, those containing `query` (ignoring case) in
    /// their message or fields when given.
    pub fn search(&self, query: Option<&str>, limit: usize) -> Vec<ActivityEntry> {
        let needle = query.map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .rev()
            .filter(|e| match &needle {
                None => true,
                Some(n) => e.message.to_lowercase().contains(n) || e.fields.to_lowercase().contains(n),
            })
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The `tracing` layer that feeds [`Activity::global`]: INFO and above from [`TARGETS`].
pub struct ActivityLayer;

/// [`ActivityLayer`] behind a filter of its own, so that events it does not keep are not
/// even made (whatever the log's level).
pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    let targets = TARGETS
        .iter()
        .fold(tracing_subscriber::filter::Targets::new(), |t, target| t.with_target(*target, tracing::Level::INFO));
    ActivityLayer.with_filter(targets)
}

/// A span's fields, formatted once when it opens.
struct SpanFields(String);

/// Formats fields as `key=value`, strings quoted when they hold spaces.
struct FieldWriter<'a> {
    out: &'a mut String,
    message: Option<&'a mut String>,
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message"
            && let Some(m) = self.message.as_deref_mut()
        {
            m.push_str(value);
            return;
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        if value.is_empty() || value.chars().any(|c| c == ' ' || c.is_control()) {
            let _ = write!(self.out, "{}={value:?}", field.name());
        } else {
            let _ = write!(self.out, "{}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message"
            && let Some(m) = self.message.as_deref_mut()
        {
            let _ = write!(m, "{value:?}");
            return;
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        let _ = write!(self.out, "{}={value:?}", field.name());
    }
}

fn source_of(target: &str) -> Option<&'static str> {
    TARGETS
        .iter()
        .find(|t| target.strip_prefix(**t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
        .map(|t| &t[5..])
}

impl<S> tracing_subscriber::Layer<S> for ActivityLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        if source_of(attrs.metadata().target()).is_none() {
            return;
        }
        let mut fields = String::new();
        attrs.record(&mut FieldWriter { out: &mut fields, message: None });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > tracing::Level::INFO {
            return;
        }
        let Some(source) = source_of(meta.target()) else { return };
        let (mut message, mut fields) = (String::new(), String::new());
        event.record(&mut FieldWriter { out: &mut fields, message: Some(&mut message) });
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>()
                    && !f.is_empty()
                {
                    fields = if fields.is_empty() { f.clone() } else { format!("{f} {fields}") };
                }
            }
        }
        let level = match *meta.level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            _ => "info",
        };
        Activity::global().push(ActivityEntry { time: tern_store::now_unix(), level, source, message, fields });
    }
}

/// How often [`MetricHistory`] samples the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: an hour.
const SAMPLES: usize = 360;

/// One sample of the counters the dashboard shows.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Sample {
    pub time: i64,
    /// Messages accepted by SMTP (all services).
    pub received: f64,
    /// Recipients delivered to other servers.
    pub delivered: f64,
    /// Recipients bounced or given up.
    pub bounced: f64,
    /// Recipients deferred for a later attempt.
    pub deferred: f64,
    /// Refusals by reason: messages after DATA, recipients, connections, failed logins.
    pub refused: Vec<(String, f64)>,
}

/// The last hour of [`Sample`]s.
#[derive(Default)]
pub struct MetricHistory {
    samples: Mutex<VecDeque<Sample>>,
}

/// Sum of a counter over the label sets whose labels include `filter` (all when empty),
/// from Prometheus text.
fn sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter(|l| filter.is_empty() || l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Per label value of `label` of a counter, from Prometheus text.
fn by_label(text: &str, name: &str, label: &str, out: &mut Vec<(String, f64)>, prefix: &str) {
    let key = format!("{label}=\"");
    for l in text.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let Some(value) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let Some(start) = l.find(&key) else { continue };
        let rest = &l[start + key.len()..];
        let Some(end) = rest.find('"') else { continue };
        let reason = format!("{prefix}{}", &rest[..end]);
        match out.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, v)) => *v += value,
            None => out.push((reason, value)),
        }
    }
}

impl MetricHistory {
    /// Takes a sample from the rendered metrics.
    pub fn sample(&self, prometheus_text: &str) {
        let sample = Self::take(prometheus_text);
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn take(prometheus_text: &str) -> Sample {
        let t = prometheus_text;
        let mut refused = Vec::new();
        by_label(t, "tern_smtp_messages_refused_total", "reason", &mut refused, "message: ");
        by_label(t, "tern_smtp_recipients_refused_total", "reason", &mut refused, "recipient: ");
        by_label(t, "tern_smtp_connections_refused_total", "reason", &mut refused, "connection: ");
        by_label(t, "tern_auth_failures_total", "service", &mut refused, "failed login: ");
        Sample {
            time: tern_store::now_unix(),
            received: sum(t, "tern_smtp_messages_accepted_total", ""),
            delivered: sum(t, "tern_delivery_recipients_total", "result=\"delivered\""),
            bounced: sum(t, "tern_delivery_recipients_total", "result=\"bounced\"")
                + sum(t, "tern_delivery_recipients_total", "result=\"expired\""),
            deferred: sum(t, "tern_delivery_recipients_total", "result=\"deferred\""),
            refused,
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// Per-minute rates over the last `minutes` minutes: for each minute that ended in the
    /// window, what the counters grew by (a restart's reset counts from zero). With `live`
    /// (the counters now) the last minute ends now; the first minute after a start counts
    /// from the first sample.
    pub fn per_minute(&self, minutes: usize, live: Option<&str>) -> Vec<MinuteRates> {
        let mut samples = self.samples();
        if let Some(text) = live {
            samples.push(Self::take(text));
        }
        let Some(last) = samples.last() else { return Vec::new() };
        let per_minute = (60 / SAMPLE_EVERY.as_secs()) as usize;
        let mut out = Vec::new();
        for m in (0..minutes).rev() {
            let end = samples.len().checked_sub(1 + m * per_minute);
            let start = end.map(|e| e.saturating_sub(per_minute));
            let (Some(start), Some(end)) = (start, end) else {
                out.push(MinuteRates { ends: last.time - (m as i64) * 60, ..MinuteRates::default() });
                continue;
            };
            let (a, b) = (&samples[start], &samples[end]);
            let grew = |x: f64, y: f64| if y >= x { y - x } else { y };
            out.push(MinuteRates {
                ends: b.time,
                received: grew(a.received, b.received),
                delivered: grew(a.delivered, b.delivered),
                bounced: grew(a.bounced, b.bounced),
                deferred: grew(a.deferred, b.deferred),
            });
        }
        out
    }

    /// Refusals in the last hour (or since the first sample), by reason, largest first.
    pub fn refused_last_hour(&self) -> Vec<(String, f64)> {
        let samples = self.samples();
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return Vec::new() };
        let mut out: Vec<(String, f64)> = last
            .refused
            .iter()
            .map(|(reason, now)| {
                let before = first.refused.iter().find(|(r, _)| r == reason).map(|(_, v)| *v).unwrap_or(0.0);
                (reason.clone(), if *now >= before { now - before } else { *now })
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// What the counters grew by in one minute.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct MinuteRates {
    /// Unix seconds at the minute's end.
    pub ends: i64,
    pub received: f64,
    pub delivered: f64,
    pub bounced: f64,
    pub deferred: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE tern_smtp_messages_accepted_total counter\n\
        tern_smtp_messages_accepted_total{service=\"smtp\"} 5\n\
        tern_smtp_messages_accepted_total{service=\"submission\"} 2\n\
        tern_smtp_messages_accepted_totalx 100\n\
        tern_delivery_recipients_total{result=\"delivered\"} 3\n\
        tern_delivery_recipients_total{result=\"deferred\"} 1\n\
        tern_smtp_recipients_refused_total{reason=\"unknown\"} 4\n\
        tern_auth_failures_total{service=\"imap\"} 2\n";

    #[test]
    fn counters_are_read_from_the_prometheus_text() {
        let h = MetricHistory::default();
        h.sample("");
        h.sample(TEXT);
        let s = h.samples();
        assert_eq!((s[1].received, s[1].delivered, s[1].deferred, s[1].bounced), (7.0, 3.0, 1.0, 0.0));
        assert_eq!(
            h.refused_last_hour(),
            vec![("recipient: unknown".to_string(), 4.0), ("failed login: imap".to_string(), 2.0)]
        );
        // Seven samples: one whole minute ended in the window.
        for _ in 0..5 {
            h.sample(TEXT);
        }
        let minutes = h.per_minute(2, None);
        assert_eq!(minutes.len(), 2);
        assert_eq!(minutes[1].received, 7.0);
        assert_eq!(minutes[0].received, 0.0);
        // The counters now end the last minute.
        let live = TEXT.replace("} 5\n", "} 8\n");
        assert_eq!(h.per_minute(2, Some(&live))[1].received, 3.0);
        // Right after a start: counted from the first sample.
        let fresh = MetricHistory::default();
        fresh.sample("");
        assert_eq!(fresh.per_minute(1, Some(TEXT))[0].received, 7.0);
    }

    #[test]
    fn the_activity_log_keeps_the_newest_and_searches_them() {
        let log = Activity::default();
        for i in 0..ACTIVITY_CAPACITY + 10 {
            log.push(ActivityEntry {
                time: i as i64,
                level: "info",
                source: "smtp",
                message: "message accepted".into(),
                fields: format!("queue_id={i} rcpts=[\"User{i}@Example.org\"]"),
            });
        }
        let all = log.search(None, 3);
        assert_eq!(all.iter().map(|e| e.time).collect::<Vec<_>>(), vec![5009, 5008, 5007]);
        let found = log.search(Some("user5005@example.ORG"), 10);
        assert_eq!(found.len(), 1);
        assert!(log.search(Some("user3@example.org"), 10).is_empty(), "the oldest were dropped");
    }

    #[test]
    fn the_layer_records_events_of_the_mail_path_with_their_session() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(ActivityLayer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: "tern_smtp::session", "smtp", sid = "abc", client = "192.0.2.1");
            let _g = span.enter();
            tracing::info!(target: "tern_smtp::session", rcpt = ?"nobody@example.org", "unknown recipient");
            tracing::info!(target: "tern_imap", "not on the mail path");
            tracing::debug!(target: "tern_smtp", "too detailed");
        });
        let found = Activity::global().search(Some("nobody@example.org"), 10);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].message, "unknown recipient");
        assert_eq!(found[0].source, "smtp");
        assert!(found[0].fields.contains("sid=abc client=192.0.2.1 rcpt="), "{}", found[0].fields);
        assert!(Activity::global().search(Some("not on the mail path"), 10).is_empty());
    }
}
