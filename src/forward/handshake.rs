//! The Forward handshake (HELO / PING / PONG) with shared keys and optional user auth, for
//! both the server (in_forward `<security>`) and the client (out_forward `<security>`).
//!
//! Owns the message formats and the SHA-512 digests. Must not do I/O: callers read one
//! message with [`super::take_message`] and write the bytes returned here.

#[cfg(test)]
use crate::msgpack::write_str_bytes;
use crate::msgpack::{
    write_array_header, write_bin, write_bool, write_map_header, write_str, Cursor, MsgpackError,
};
use bytes::{Bytes, BytesMut};
use rand::RngCore;
use sha2::{Digest, Sha512};
use std::net::{IpAddr, ToSocketAddrs};

/// `<security>` inside in_forward: the settings of the server side of the handshake (built by
/// `input::forward::config`).
#[derive(Debug, Clone, Default)]
pub struct ServerSecurityConfig {
    pub self_hostname: String,
    pub shared_key: String,
    pub user_auth: bool,
    pub allow_anonymous_source: bool,
    pub users: Vec<UserConfig>,
    pub clients: Vec<ClientConfig>,
}

/// `<user>` inside `<security>`.
#[derive(Debug, Clone, Default)]
pub struct UserConfig {
    pub username: String,
    pub password: String,
}

/// `<client>` inside `<security>`.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    pub host: Option<String>,
    pub network: Option<String>,
    pub shared_key: Option<String>,
    pub users: Vec<String>,
}

/// Why a handshake failed. The first three are the reasons the server sends in its PONG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("shared_key mismatch")]
    SharedKeyMismatch,
    #[error("username/password mismatch")]
    UserMismatch,
    #[error("anonymous source host '{0}' denied")]
    AnonymousDenied(IpAddr),
    #[error("invalid {0} message: {1}")]
    Malformed(&'static str, String),
    #[error("the server refused the handshake: {0}")]
    Refused(String),
    #[error("the server's PONG digest does not match: it does not share our shared_key")]
    ServerDigestMismatch,
    #[error("the server's hostname {0:?} is our own self_hostname (a node forwarding to itself?)")]
    SameHostname(String),
    #[error("invalid <client> in <security>: {0}")]
    BadClientConfig(String),
}

/// `hex(SHA512(salt ‖ hostname ‖ nonce ‖ shared_key))`, as in PING and PONG.
pub fn shared_key_digest(salt: &[u8], hostname: &[u8], nonce: &[u8], shared_key: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(salt);
    h.update(hostname);
    h.update(nonce);
    h.update(shared_key);
    hex::encode(h.finalize())
}

/// `hex(SHA512(auth_salt ‖ username ‖ password))`, the PING password digest.
pub fn password_digest(auth_salt: &[u8], username: &[u8], password: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(auth_salt);
    h.update(username);
    h.update(password);
    hex::encode(h.finalize())
}

/// 16 random bytes (the HELO nonce and auth salt).
pub fn generate_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

/// 32 lowercase hex characters, like Ruby's `SecureRandom.hex(16)` (the PING shared-key salt).
pub fn generate_shared_key_salt() -> String {
    hex::encode(generate_nonce())
}

/// Which peers a `<client>` matches.
#[derive(Debug, Clone)]
enum AddrMatcher {
    Addrs(Vec<IpAddr>),
    Network { base: IpAddr, prefix: u8 },
}

impl AddrMatcher {
    fn matches(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        match self {
            AddrMatcher::Addrs(addrs) => addrs.iter().any(|a| a.to_canonical() == peer),
            AddrMatcher::Network { base, prefix } => match (base, peer) {
                (IpAddr::V4(b), IpAddr::V4(p)) => {
                    let mask = u32::MAX.checked_shl(32 - *prefix as u32).unwrap_or(0);
                    u32::from(*b) & mask == u32::from(p) & mask
                }
                (IpAddr::V6(b), IpAddr::V6(p)) => {
                    let mask = u128::MAX.checked_shl(128 - *prefix as u32).unwrap_or(0);
                    u128::from(*b) & mask == u128::from(p) & mask
                }
                _ => false,
            },
        }
    }
}

#[derive(Debug, Clone)]
struct ClientRule {
    matcher: AddrMatcher,
    shared_key: Option<String>,
    users: Vec<String>,
}

/// The server's `<security>`, ready to check PINGs.
#[derive(Debug, Clone)]
pub struct ServerSecurity {
    self_hostname: String,
    shared_key: String,
    user_auth: bool,
    allow_anonymous_source: bool,
    users: Vec<(String, String)>,
    clients: Vec<ClientRule>,
}

impl ServerSecurity {
    /// Build from config. `<client host>` names are resolved here (blocking DNS: call at startup).
    pub fn from_config(cfg: &ServerSecurityConfig) -> Result<Self, HandshakeError> {
        let mut clients = Vec::new();
        for c in &cfg.clients {
            let matcher = match (&c.host, &c.network) {
                (Some(host), None) => {
                    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
                        Ok(ip) => vec![ip],
                        Err(_) => (host.as_str(), 0)
                            .to_socket_addrs()
                            .map_err(|e| {
                                HandshakeError::BadClientConfig(format!(
                                    "cannot resolve host {host:?}: {e}"
                                ))
                            })?
                            .map(|a| a.ip())
                            .collect(),
                    };
                    AddrMatcher::Addrs(addrs)
                }
                (None, Some(net)) => parse_network(net)?,
                _ => {
                    return Err(HandshakeError::BadClientConfig(
                        "exactly one of host and network is required".into(),
                    ))
                }
            };
            clients.push(ClientRule {
                matcher,
                shared_key: c.shared_key.clone(),
                users: c.users.clone(),
            });
        }
        Ok(ServerSecurity {
            self_hostname: cfg.self_hostname.clone(),
            shared_key: cfg.shared_key.clone(),
            user_auth: cfg.user_auth,
            allow_anonymous_source: cfg.allow_anonymous_source,
            users: cfg
                .users
                .iter()
                .map(|u| (u.username.clone(), u.password.clone()))
                .collect(),
            clients,
        })
    }

    pub fn self_hostname(&self) -> &str {
        &self.self_hostname
    }
}

fn parse_network(net: &str) -> Result<AddrMatcher, HandshakeError> {
    let bad = || HandshakeError::BadClientConfig(format!("invalid network {net:?}"));
    let (addr, prefix) = match net.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
        None => (net, None),
    };
    let base: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if base.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    if prefix > max {
        return Err(bad());
    }
    Ok(AddrMatcher::Network { base, prefix })
}

/// Result of checking a PING: the PONG to send in every case, and whether to go on.
#[derive(Debug, Clone)]
pub struct PingOutcome {
    pub pong: Bytes,
    /// The client's hostname when accepted; the reason (also in the PONG) when refused.
    pub result: Result<String, HandshakeError>,
}

/// One connection's server side of the handshake.
#[derive(Debug, Clone)]
pub struct ServerHandshake {
    nonce: [u8; 16],
    /// Empty unless `user_auth`.
    auth_salt: Vec<u8>,
    keepalive: bool,
}

impl ServerHandshake {
    /// Fresh random nonce (and auth salt when `user_auth`).
    pub fn new(security: &ServerSecurity, keepalive: bool) -> Self {
        let auth_salt = if security.user_auth {
            generate_nonce().to_vec()
        } else {
            Vec::new()
        };
        ServerHandshake {
            nonce: generate_nonce(),
            auth_salt,
            keepalive,
        }
    }

    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    pub fn auth_salt(&self) -> &[u8] {
        &self.auth_salt
    }

    /// `["HELO", {"nonce": bin, "auth": bin or "", "keepalive": bool}]`
    pub fn helo(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        write_array_header(&mut out, 2);
        write_str(&mut out, "HELO");
        write_map_header(&mut out, 3);
        write_str(&mut out, "nonce");
        write_bin(&mut out, &self.nonce);
        write_str(&mut out, "auth");
        if self.auth_salt.is_empty() {
            write_str(&mut out, "");
        } else {
            write_bin(&mut out, &self.auth_salt);
        }
        write_str(&mut out, "keepalive");
        write_bool(&mut out, self.keepalive);
        out.freeze()
    }

    /// Check a PING from `peer` and build the PONG.
    pub fn check_ping(&self, security: &ServerSecurity, ping: &[u8], peer: IpAddr) -> PingOutcome {
        let result = self.verify_ping(security, ping, peer);
        let pong = match &result {
            Ok((salt, shared_key, _)) => encode_pong(
                true,
                "",
                &security.self_hostname,
                &shared_key_digest(
                    salt,
                    security.self_hostname.as_bytes(),
                    &self.nonce,
                    shared_key.as_bytes(),
                ),
            ),
            Err(e) => encode_pong(false, &e.to_string(), "", ""),
        };
        PingOutcome {
            pong,
            result: result.map(|(_, _, hostname)| hostname),
        }
    }

    /// On success: (shared_key_salt, shared_key, client hostname).
    fn verify_ping(
        &self,
        security: &ServerSecurity,
        ping: &[u8],
        peer: IpAddr,
    ) -> Result<(Vec<u8>, String, String), HandshakeError> {
        let p = parse_ping(ping)?;
        let rule = security.clients.iter().find(|c| c.matcher.matches(peer));
        if rule.is_none() && !security.allow_anonymous_source {
            return Err(HandshakeError::AnonymousDenied(peer));
        }
        let shared_key = rule
            .and_then(|r| r.shared_key.clone())
            .unwrap_or_else(|| security.shared_key.clone());
        let expected = shared_key_digest(&p.salt, &p.hostname, &self.nonce, shared_key.as_bytes());
        if !constant_time_eq(expected.as_bytes(), &p.digest) {
            return Err(HandshakeError::SharedKeyMismatch);
        }
        if security.user_auth {
            let allowed = |name: &str| match rule {
                Some(r) if !r.users.is_empty() => r.users.iter().any(|u| u == name),
                _ => true,
            };
            let ok = security.users.iter().any(|(name, password)| {
                allowed(name)
                    && name.as_bytes() == p.username.as_slice()
                    && constant_time_eq(
                        password_digest(&self.auth_salt, name.as_bytes(), password.as_bytes())
                            .as_bytes(),
                        &p.password_digest,
                    )
            });
            if !ok {
                return Err(HandshakeError::UserMismatch);
            }
        }
        Ok((
            p.salt,
            shared_key,
            String::from_utf8_lossy(&p.hostname).into_owned(),
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Ping {
    hostname: Vec<u8>,
    salt: Vec<u8>,
    digest: Vec<u8>,
    username: Vec<u8>,
    password_digest: Vec<u8>,
}

fn malformed(what: &'static str, why: impl Into<String>) -> HandshakeError {
    HandshakeError::Malformed(what, why.into())
}

fn parse_ping(msg: &[u8]) -> Result<Ping, HandshakeError> {
    let m = |e: MsgpackError| malformed("PING", e.to_string());
    let mut c = Cursor::new(msg);
    if c.array_len().map_err(m)? != Some(6) {
        return Err(malformed("PING", "expected an array of 6 elements"));
    }
    let mut field = |name: &str| -> Result<Vec<u8>, HandshakeError> {
        c.raw_bytes()
            .map_err(m)?
            .map(|b| b.to_vec())
            .ok_or_else(|| malformed("PING", format!("{name} is not a string")))
    };
    if field("message type")? != b"PING" {
        return Err(malformed("PING", "first element is not \"PING\""));
    }
    let hostname = field("hostname")?;
    let salt = field("shared_key_salt")?;
    let digest = field("shared_key_hexdigest")?;
    let username = field("username")?;
    let password_digest = field("password digest")?;
    Ok(Ping {
        hostname,
        salt,
        digest,
        username,
        password_digest,
    })
}

fn encode_pong(ok: bool, reason: &str, hostname: &str, digest: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(200);
    write_array_header(&mut out, 5);
    write_str(&mut out, "PONG");
    write_bool(&mut out, ok);
    write_str(&mut out, reason);
    write_str(&mut out, hostname);
    write_str(&mut out, digest);
    out.freeze()
}

/// The server's HELO as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helo {
    pub nonce: Vec<u8>,
    /// Empty when the server does not ask for user auth.
    pub auth_salt: Vec<u8>,
    /// Whether the server allows keepalive (true when the key is absent, as Fluent Bit sends).
    pub keepalive: bool,
}

impl Helo {
    pub fn parse(msg: &[u8]) -> Result<Helo, HandshakeError> {
        let m = |e: MsgpackError| malformed("HELO", e.to_string());
        let mut c = Cursor::new(msg);
        if c.array_len().map_err(m)? != Some(2) {
            return Err(malformed("HELO", "expected an array of 2 elements"));
        }
        if c.raw_bytes().map_err(m)? != Some(b"HELO".as_slice()) {
            return Err(malformed("HELO", "first element is not \"HELO\""));
        }
        let pairs = c
            .map_len()
            .map_err(m)?
            .ok_or_else(|| malformed("HELO", "options are not a map"))?;
        let mut helo = Helo {
            nonce: Vec::new(),
            auth_salt: Vec::new(),
            keepalive: true,
        };
        let mut has_nonce = false;
        for _ in 0..pairs {
            let key = c.raw_bytes().map_err(m)?;
            match key {
                Some(b"nonce") => {
                    helo.nonce = c
                        .raw_bytes()
                        .map_err(m)?
                        .ok_or_else(|| malformed("HELO", "nonce is not a string"))?
                        .to_vec();
                    has_nonce = true;
                }
                Some(b"auth") => {
                    helo.auth_salt = match c.raw_bytes().map_err(m)? {
                        Some(b) => b.to_vec(),
                        None if c.nil().map_err(m)? => Vec::new(),
                        None => return Err(malformed("HELO", "auth is not a string")),
                    };
                }
                Some(b"keepalive") => match c.bool().map_err(m)? {
                    Some(v) => helo.keepalive = v,
                    None => {
                        c.skip().map_err(m)?;
                    }
                },
                Some(_) => {
                    c.skip().map_err(m)?;
                }
                None => {
                    c.skip().map_err(m)?;
                    c.skip().map_err(m)?;
                }
            }
        }
        if !has_nonce {
            return Err(malformed("HELO", "no nonce"));
        }
        Ok(helo)
    }
}

/// One connection's client side of the handshake.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    self_hostname: String,
    shared_key: String,
    username: String,
    password: String,
    shared_key_salt: String,
    nonce: Option<Vec<u8>>,
}

impl ClientHandshake {
    /// `username`/`password` are sent only when the server's HELO asks for auth.
    pub fn new(self_hostname: &str, shared_key: &str, username: &str, password: &str) -> Self {
        Self::with_salt(
            self_hostname,
            shared_key,
            username,
            password,
            generate_shared_key_salt(),
        )
    }

    /// As [`ClientHandshake::new`] with a given shared-key salt (for tests).
    pub fn with_salt(
        self_hostname: &str,
        shared_key: &str,
        username: &str,
        password: &str,
        shared_key_salt: String,
    ) -> Self {
        ClientHandshake {
            self_hostname: self_hostname.to_string(),
            shared_key: shared_key.to_string(),
            username: username.to_string(),
            password: password.to_string(),
            shared_key_salt,
            nonce: None,
        }
    }

    /// Read the HELO and build the PING.
    /// `["PING", self_hostname, salt, shared_key_digest, username, password_digest]`
    pub fn ping(&mut self, helo_msg: &[u8]) -> Result<(Helo, Bytes), HandshakeError> {
        let helo = Helo::parse(helo_msg)?;
        let digest = shared_key_digest(
            self.shared_key_salt.as_bytes(),
            self.self_hostname.as_bytes(),
            &helo.nonce,
            self.shared_key.as_bytes(),
        );
        let (user, pass) = if helo.auth_salt.is_empty() {
            (String::new(), String::new())
        } else {
            (
                self.username.clone(),
                password_digest(
                    &helo.auth_salt,
                    self.username.as_bytes(),
                    self.password.as_bytes(),
                ),
            )
        };
        let mut out = BytesMut::with_capacity(400);
        write_array_header(&mut out, 6);
        write_str(&mut out, "PING");
        write_str(&mut out, &self.self_hostname);
        write_str(&mut out, &self.shared_key_salt);
        write_str(&mut out, &digest);
        write_str(&mut out, &user);
        write_str(&mut out, &pass);
        self.nonce = Some(helo.nonce.clone());
        Ok((helo, out.freeze()))
    }

    /// Verify the PONG; returns the server's hostname.
    pub fn check_pong(&self, pong: &[u8]) -> Result<String, HandshakeError> {
        let m = |e: MsgpackError| malformed("PONG", e.to_string());
        let nonce = self
            .nonce
            .as_deref()
            .ok_or_else(|| malformed("PONG", "received before HELO"))?;
        let mut c = Cursor::new(pong);
        if c.array_len().map_err(m)? != Some(5) {
            return Err(malformed("PONG", "expected an array of 5 elements"));
        }
        if c.raw_bytes().map_err(m)? != Some(b"PONG".as_slice()) {
            return Err(malformed("PONG", "first element is not \"PONG\""));
        }
        let ok = c
            .bool()
            .map_err(m)?
            .ok_or_else(|| malformed("PONG", "second element is not a bool"))?;
        let mut text = |name: &str| -> Result<String, HandshakeError> {
            c.raw_bytes()
                .map_err(m)?
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| malformed("PONG", format!("{name} is not a string")))
        };
        let reason = text("reason")?;
        let hostname = text("hostname")?;
        let digest = text("digest")?;
        if !ok {
            return Err(HandshakeError::Refused(reason));
        }
        if hostname == self.self_hostname {
            return Err(HandshakeError::SameHostname(hostname));
        }
        let expected = shared_key_digest(
            self.shared_key_salt.as_bytes(),
            hostname.as_bytes(),
            nonce,
            self.shared_key.as_bytes(),
        );
        if !constant_time_eq(expected.as_bytes(), digest.as_bytes()) {
            return Err(HandshakeError::ServerDigestMismatch);
        }
        Ok(hostname)
    }
}

/// Build a PING by hand (used by tests of the server with arbitrary fields).
#[cfg(test)]
pub(crate) fn encode_ping_fields(fields: [&[u8]; 5]) -> Bytes {
    let mut out = BytesMut::new();
    write_array_header(&mut out, 6);
    write_str(&mut out, "PING");
    for f in fields {
        write_str_bytes(&mut out, f);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha512_hex(parts: &[&[u8]]) -> String {
        // Independent computation: concatenate first, then hash once.
        let joined: Vec<u8> = parts.concat();
        hex::encode(Sha512::digest(&joined))
    }

    fn security(shared_key: &str) -> ServerSecurity {
        ServerSecurity::from_config(&ServerSecurityConfig {
            self_hostname: "server.example".into(),
            shared_key: shared_key.into(),
            user_auth: false,
            allow_anonymous_source: true,
            users: vec![],
            clients: vec![],
        })
        .unwrap()
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn digests_follow_the_formula() {
        let nonce = [7u8; 16];
        let d = shared_key_digest(b"salty", b"client.host", &nonce, b"secret");
        assert_eq!(
            d,
            sha512_hex(&[b"salty", b"client.host", &nonce, b"secret"])
        );
        assert_eq!(d.len(), 128);
        let p = password_digest(&[1, 2, 3], b"alice", b"pw");
        assert_eq!(p, sha512_hex(&[&[1, 2, 3], b"alice", b"pw"]));
    }

    #[test]
    fn salt_is_32_hex_chars() {
        let s = generate_shared_key_salt();
        assert_eq!(s.len(), 32);
        assert!(s
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(s, generate_shared_key_salt());
    }

    #[test]
    fn round_trip_succeeds_with_same_key() {
        let sec = security("secret");
        let server = ServerHandshake::new(&sec, true);
        let mut client = ClientHandshake::new("client.example", "secret", "", "");
        let (helo, ping) = client.ping(&server.helo()).unwrap();
        assert_eq!(helo.nonce, server.nonce());
        assert!(helo.keepalive);
        // The PING digest is the formula's, computed independently.
        let mut c = Cursor::new(&ping);
        c.array_len().unwrap();
        let fields: Vec<Vec<u8>> = (0..6)
            .map(|_| c.raw_bytes().unwrap().unwrap().to_vec())
            .collect();
        assert_eq!(fields[1], b"client.example");
        assert_eq!(fields[2].len(), 32);
        assert_eq!(
            fields[3],
            sha512_hex(&[&fields[2], b"client.example", server.nonce(), b"secret"]).into_bytes()
        );
        let outcome = server.check_ping(&sec, &ping, LOCAL);
        assert_eq!(outcome.result.unwrap(), "client.example");
        assert_eq!(client.check_pong(&outcome.pong).unwrap(), "server.example");
    }

    #[test]
    fn wrong_key_is_refused_with_reason() {
        let sec = security("secret");
        let server = ServerHandshake::new(&sec, false);
        let mut client = ClientHandshake::new("client.example", "wrong", "", "");
        let (helo, ping) = client.ping(&server.helo()).unwrap();
        assert!(!helo.keepalive);
        let outcome = server.check_ping(&sec, &ping, LOCAL);
        assert_eq!(
            outcome.result.unwrap_err(),
            HandshakeError::SharedKeyMismatch
        );
        assert_eq!(
            client.check_pong(&outcome.pong).unwrap_err(),
            HandshakeError::Refused("shared_key mismatch".into())
        );
    }

    #[test]
    fn client_rejects_forged_pong_and_own_hostname() {
        let sec = security("secret");
        let server = ServerHandshake::new(&sec, true);
        let mut client = ClientHandshake::new("server.example", "secret", "", "");
        let (_, ping) = client.ping(&server.helo()).unwrap();
        let outcome = server.check_ping(&sec, &ping, LOCAL);
        assert!(matches!(
            client.check_pong(&outcome.pong),
            Err(HandshakeError::SameHostname(_))
        ));
        let mut client = ClientHandshake::new("c", "secret", "", "");
        client.ping(&server.helo()).unwrap();
        let forged = encode_pong(true, "", "server.example", &"0".repeat(128));
        assert_eq!(
            client.check_pong(&forged).unwrap_err(),
            HandshakeError::ServerDigestMismatch
        );
    }

    #[test]
    fn user_auth_and_client_rules() {
        let cfg = ServerSecurityConfig {
            self_hostname: "srv".into(),
            shared_key: "default".into(),
            user_auth: true,
            allow_anonymous_source: false,
            users: vec![
                UserConfig {
                    username: "alice".into(),
                    password: "apw".into(),
                },
                UserConfig {
                    username: "bob".into(),
                    password: "bpw".into(),
                },
            ],
            clients: vec![ClientConfig {
                host: None,
                network: Some("127.0.0.0/8".into()),
                shared_key: Some("per-client".into()),
                users: vec!["alice".into()],
            }],
        };
        let sec = ServerSecurity::from_config(&cfg).unwrap();
        let run = |key: &str, user: &str, pass: &str, peer: IpAddr| {
            let server = ServerHandshake::new(&sec, true);
            assert_eq!(server.auth_salt().len(), 16);
            let mut client = ClientHandshake::new("c", key, user, pass);
            let (_, ping) = client.ping(&server.helo()).unwrap();
            server.check_ping(&sec, &ping, peer).result
        };
        assert!(run("per-client", "alice", "apw", LOCAL).is_ok());
        assert_eq!(
            run("default", "alice", "apw", LOCAL).unwrap_err(),
            HandshakeError::SharedKeyMismatch
        );
        assert_eq!(
            run("per-client", "alice", "bad", LOCAL).unwrap_err(),
            HandshakeError::UserMismatch
        );
        // bob is a known user but not allowed for this client
        assert_eq!(
            run("per-client", "bob", "bpw", LOCAL).unwrap_err(),
            HandshakeError::UserMismatch
        );
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            run("default", "alice", "apw", other).unwrap_err(),
            HandshakeError::AnonymousDenied(other)
        );
    }

    #[test]
    fn malformed_ping_gets_a_refusing_pong() {
        let sec = security("k");
        let server = ServerHandshake::new(&sec, true);
        let out = server.check_ping(&sec, &[0x91, 0xa4, b'P', b'I', b'N', b'G'], LOCAL);
        assert!(matches!(out.result, Err(HandshakeError::Malformed(..))));
        let mut client = ClientHandshake::new("c", "k", "", "");
        client.ping(&server.helo()).unwrap();
        assert!(matches!(
            client.check_pong(&out.pong),
            Err(HandshakeError::Refused(_))
        ));
        let ping = encode_ping_fields([b"h", b"s", b"d", b"", b""]);
        assert_eq!(
            server.check_ping(&sec, &ping, LOCAL).result.unwrap_err(),
            HandshakeError::SharedKeyMismatch
        );
    }

    #[test]
    fn network_matching() {
        let m = parse_network("192.168.1.0/24").unwrap();
        assert!(m.matches("192.168.1.77".parse().unwrap()));
        assert!(m.matches("::ffff:192.168.1.77".parse().unwrap()));
        assert!(!m.matches("192.168.2.1".parse().unwrap()));
        assert!(parse_network("10.0.0.0/33").is_err());
        let all = parse_network("0.0.0.0/0").unwrap();
        assert!(all.matches("8.8.8.8".parse().unwrap()));
    }
}
