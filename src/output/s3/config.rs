//! `<match> @type s3`: the typed [`S3OutputConfig`] (fluent-plugin-s3's parameter names) and
//! its builder, with Fluentd's buffer defaults for out_s3.
//!
//! Owns out_s3's parameter names and defaults; it must not upload anything (only an aggregator
//! cluster's leader does, in `cluster::upload`).

use crate::buffer::config::{BufferConfig, PluginBufferDefaults};
use crate::config::diag::Diag;
use crate::config::registry::{OutputConfig, OutputPlugin};
use crate::config::section::Section;
use crate::output::{Output, OutputError, OutputSpec};
use std::time::Duration;

/// The registry's entry for `@type s3`.
pub(crate) const PLUGIN: OutputPlugin = OutputPlugin {
    name: "s3",
    build: |sec, d| build(sec, d).map(OutputConfig::S3),
    unimplemented_params: &[
        "s3_object_key_format",
        "use_server_side_encryption",
        "ssekms_key_id",
        "storage_class",
        "acl",
        "check_bucket",
        "check_object",
        "auto_create_bucket",
        "time_slice_format",
        "hex_random_length",
        "index_format",
        "s3_metadata",
    ],
    unimplemented_sections: &[
        "inject",
        "assume_role_credentials",
        "instance_profile_credentials",
    ],
    buffer: PluginBufferDefaults {
        chunk_keys: &["time"],
        timekey: Some(Duration::from_secs(3600)),
        flush_at_shutdown: None,
        chunk_limit_size: None,
        requires_tag_key: false,
        legacy_flat: None,
    },
};

/// `<match> @type s3`: an S3-compatible bucket (fluent-plugin-s3's parameter names).
#[derive(Clone)]
pub struct S3OutputConfig {
    pub bucket: String,
    pub region: Option<String>,
    /// `s3_endpoint`: an S3-compatible server (MinIO, Ceph...) instead of AWS.
    pub endpoint: Option<String>,
    /// `path`: key prefix inside the bucket.
    pub prefix: String,
    /// `aws_key_id` / `aws_sec_key`; when absent the `AWS_*` environment is used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: bool,
    /// `request_timeout` (lograft; default 30s): how long one request to the object store may
    /// take before it is abandoned and retried, so a hung connection holds an upload slot no
    /// longer than this.
    pub request_timeout: Duration,
    /// `connect_timeout` (lograft; default 5s).
    pub connect_timeout: Duration,
    /// `store_as`: `gzip` (the default: `.log.gz` objects) or `text` (plain out_file lines,
    /// `.log`). fluent-plugin-s3's other formats (json, lzo, lzma2, zstd, parquet) are refused.
    pub store_as_gzip: bool,
}

/// Default `request_timeout` (object_store's own default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `connect_timeout` (object_store's own default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for S3OutputConfig {
    // Never print the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3OutputConfig")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("force_path_style", &self.force_path_style)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("store_as_gzip", &self.store_as_gzip)
            .finish_non_exhaustive()
    }
}

/// The typed config of `<match> @type s3` (`None` without `s3_bucket`); fluent-plugin-s3's
/// parameter names; credentials may also come from the `AWS_*` environment.
pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> Option<S3OutputConfig> {
    let bucket = sec.required_string(d, "s3_bucket");
    let cfg = S3OutputConfig {
        bucket: bucket.clone().unwrap_or_default(),
        region: sec.string("s3_region"),
        endpoint: sec.string("s3_endpoint"),
        prefix: sec.string("path").unwrap_or_default(),
        access_key_id: sec.string("aws_key_id"),
        secret_access_key: sec.string("aws_sec_key"),
        force_path_style: sec.bool(d, "force_path_style", false),
        request_timeout: sec
            .duration(d, "request_timeout")
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        connect_timeout: sec
            .duration(d, "connect_timeout")
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        store_as_gzip: sec.enumerated(d, "store_as", &["gzip", "text"]) != Some("text"),
    };
    bucket.map(|_| cfg)
}

impl OutputSpec for S3OutputConfig {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    /// Only an aggregator cluster's leader uploads (`cluster::upload`); a single node has no s3
    /// runtime.
    fn build(&self, _: &BufferConfig) -> Result<Output, OutputError> {
        Err(OutputError::Unrecoverable(
            "@type s3 is an upload target of an aggregator cluster; add a <cluster> section (a single node has no s3 output)".into(),
        ))
    }

    fn describe(&self) -> String {
        let endpoint = self
            .endpoint
            .as_deref()
            .map(|e| format!(" endpoint={e}"))
            .unwrap_or_default();
        let path = if self.prefix.is_empty() {
            String::new()
        } else {
            format!(" path={}", self.prefix)
        };
        format!("s3 bucket={}{endpoint}{path}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{errors, ok};
    use crate::config::OutputConfig;

    fn s3_match(store_as: &str) -> String {
        format!("<match app.**>\n  @type s3\n  s3_bucket logs\n{store_as}</match>\n")
    }

    /// `store_as` as fluent-plugin-s3: gzip by default, `text` for plain objects; its other
    /// formats are refused with the file, line and key rather than silently gzipped.
    #[test]
    fn store_as_is_gzip_or_text_and_other_formats_are_refused() {
        for (line, gzip) in [
            ("", true),
            ("  store_as gzip\n", true),
            ("  store_as text\n", false),
        ] {
            let loaded = ok(&s3_match(line));
            match &loaded.config.matches[0].output {
                OutputConfig::S3(s3) => assert_eq!(s3.store_as_gzip, gzip, "{line:?}"),
                other => panic!("{other:?}"),
            }
        }
        let err = errors(&s3_match("  store_as json\n"));
        assert!(
            err.contains("test.conf:4") && err.contains("store_as"),
            "{err}"
        );
    }
}
