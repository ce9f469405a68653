//! monitor_agent's `/api/plugins.json`: one object per plugin with Fluentd's field names, so
//! scripts and dashboards written for Fluentd (Telegraf's fluentd input, Datadog's check)
//! keep working.
//!
//! Fields, as Fluentd defines them: `plugin_id` (`@id`, else a stable generated id),
//! `plugin_category` (`input`/`output`), `type`, `output_plugin`, `retry_count` (null for
//! inputs), `emit_records` / `emit_count` / `emit_size` (inputs: events, batches and bytes
//! they handed to the node; outputs: events they received, i.e. written, held in the buffer
//! or set aside), and for outputs `buffer_queue_length`, `buffer_total_queued_size` (bytes in
//! all stages), `buffer_stage_length`, `buffer_stage_byte_size`, `buffer_queue_byte_size`,
//! `write_count`, `rollback_count` (failed writes). `config` and `retry` (Fluentd ≥ 1.19.3
//! omits them by default) are not produced. It only reads [`Metrics`].

use super::Metrics;
use serde_json::{json, Value};

pub(crate) fn render(metrics: &Metrics) -> String {
    let plugins: Vec<Value> = metrics
        .plugins()
        .iter()
        .map(|p| {
            let mut o = json!({
                "plugin_id": p.plugin_id,
                "plugin_category": p.category,
                "type": p.type_name,
                "output_plugin": p.category == "output",
                "retry_count": Value::Null,
            });
            if let Some(i) = &p.input {
                o["emit_records"] = json!(i.events.get());
                o["emit_count"] = json!(i.chunks.get());
                o["emit_size"] = json!(i.bytes.get());
            }
            if let Some(out) = &p.output {
                let stats = p.buffer.as_ref().map(|b| b.stats()).unwrap_or_default();
                let (_, quarantined) = out.quarantined();
                let secondary = out.set_aside_events_to_secondary();
                o["retry_count"] = json!(out.retry_count());
                o["emit_records"] =
                    json!(out.events.get() + stats.records + quarantined + secondary);
                o["write_count"] = json!(out.chunks.get());
                o["rollback_count"] = json!(out.errors_total());
                o["buffer_queue_length"] = json!(stats.queued_chunks + stats.in_flight_chunks);
                o["buffer_queue_byte_size"] = json!(stats.queued_bytes + stats.in_flight_bytes);
                o["buffer_stage_length"] = json!(stats.staged_chunks);
                o["buffer_stage_byte_size"] = json!(stats.staged_bytes);
                o["buffer_total_queued_size"] =
                    json!(stats.staged_bytes + stats.queued_bytes + stats.in_flight_bytes);
            }
            o
        })
        .collect();
    json!({ "plugins": plugins }).to_string()
}
