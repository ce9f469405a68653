//! The `s3` output's home: its typed config ([`config::S3OutputConfig`]). There is no
//! single-node s3 output: only an aggregator cluster's leader uploads, in `cluster::upload`.

pub mod config;
