//! out_forward: sends chunks to `<server>`s over the Forward protocol, with primary/standby
//! failover, heartbeats and acknowledgements.
//!
//! Owns per-server health ([`phi`] detector, `hard_timeout`, `recover_wait`) and the choice of
//! server ([`balance`]). The wire format comes from [`crate::forward`]; retry timing comes from
//! the output driver.

pub mod balance;
pub mod phi;
