//! The TLS client configuration handed to `reqwest`: rustls on *ring*, TLS 1.3 only,
//! the webpki root store, and no client certificates.
//!
//! Why not reqwest's own rustls set-up: it takes *ring*'s whole default provider, whose
//! key provider loads RSA/ECDSA/Ed25519 *signing* keys (client certificates, which Tether
//! never presents) and whose TLS 1.2 suites and P-384 key exchange the backend (one
//! Cloudflare-fronted origin, always TLS 1.3) never negotiates. Built from the provider's
//! pieces instead, the stripped library is smaller (the figure is in Cargo.toml, next to
//! the `reqwest` line). Every certificate chain a public CA issues still verifies: ECDSA
//! P-256/P-384, RSA PKCS#1 and PSS, the table rustls uses for *ring* less Ed25519, which
//! no publicly trusted CA may issue (CA/Browser Forum: RSA and ECDSA keys only).

use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::crypto::{CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::SigningKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use webpki::ring as alg;

use crate::error::{Error, Result};

/// The client configuration: webpki's roots plus `extra_roots` (empty in every app build;
/// the loopback TLS tests pass the CA they minted).
pub(crate) fn client_config(extra_roots: &[CertificateDer<'static>]) -> Result<ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| Error::Config(format!("TLS root certificate: {e}")))?;
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // What reqwest's own set-up offers without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn provider() -> CryptoProvider {
    CryptoProvider {
        // AES-GCM only: every TLS 1.3 server must offer TLS_AES_128_GCM_SHA256 (RFC 8446
        // 9.1). ChaCha20-Poly1305 is faster only on CPUs without AES instructions (old
        // low-end Android), where *ring*'s constant-time AES still works, and cost 52,992
        // bytes of the stripped library (x86_64: its SSE4.1 and AVX2 code).
        cipher_suites: vec![
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
        ],
        // Every TLS 1.3 server must accept P-256 (RFC 8446 9.1); X25519 first, as rustls.
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1],
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &SystemRandom,
        key_provider: &NoClientKeys,
    }
}

/// The algorithms a server's chain and handshake signature may use: the table rustls
/// builds for *ring* without Ed25519 (its verifier cost 7,296 bytes of the stripped
/// library; no public CA issues Ed25519 certificates).
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        alg::ECDSA_P256_SHA256,
        alg::ECDSA_P256_SHA384,
        alg::ECDSA_P384_SHA256,
        alg::ECDSA_P384_SHA384,
        alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        alg::RSA_PKCS1_2048_8192_SHA256,
        alg::RSA_PKCS1_2048_8192_SHA384,
        alg::RSA_PKCS1_2048_8192_SHA512,
        alg::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        alg::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        alg::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
        ),
        (
            SignatureScheme::RSA_PSS_SHA512,
            &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA384,
            &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA256,
            &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA512,
            &[alg::RSA_PKCS1_2048_8192_SHA512],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA384,
            &[alg::RSA_PKCS1_2048_8192_SHA384],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA256,
            &[alg::RSA_PKCS1_2048_8192_SHA256],
        ),
    ],
};

#[derive(Debug)]
struct SystemRandom;

impl SecureRandom for SystemRandom {
    fn fill(&self, buf: &mut [u8]) -> std::result::Result<(), GetRandomFailed> {
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
            .map_err(|_| GetRandomFailed)
    }
}

/// Tether never presents a client certificate, so it never loads a signing key: this
/// keeps *ring*'s private-key code out of the library.
#[derive(Debug)]
struct NoClientKeys;

impl KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _key_der: PrivateKeyDer<'static>,
    ) -> std::result::Result<Arc<dyn SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "client certificates are not supported".into(),
        ))
    }
}

/// Real handshakes over loopback: a CA and server certificate minted per run, a rustls
/// server in the test, and the client under test trusting that CA.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SignatureAlgorithm,
    };
    use reqwest::Method;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ProtocolVersion, ServerConfig, SupportedProtocolVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use crate::config::ClientConfig;
    use crate::error::{Error, NetworkFailure};
    use crate::transport::{Request, Transport};

    /// A throwaway RSA key made for these tests (`openssl genpkey -algorithm RSA`); rcgen
    /// on *ring* cannot generate RSA keys.
    const RSA_KEY: &str = include_str!("testdata/rsa-2048.pem");

    struct Pki {
        ca: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    }

    fn key(alg: Option<&'static SignatureAlgorithm>) -> KeyPair {
        match alg {
            Some(alg) => KeyPair::generate_for(alg).unwrap(),
            None => KeyPair::from_pem(RSA_KEY).unwrap(),
        }
    }

    /// A CA and a server certificate for 127.0.0.1 signed by it (`None`: RSA).
    fn pki(
        ca_alg: Option<&'static SignatureAlgorithm>,
        leaf_alg: Option<&'static SignatureAlgorithm>,
    ) -> Pki {
        let ca_key = key(ca_alg);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = key(leaf_alg);
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        Pki {
            ca: ca.der().clone(),
            chain: vec![leaf.der().clone(), ca.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        }
    }

    /// What the server saw of one handshake: `Err` with rustls's reason if it failed.
    type Seen = Result<(ProtocolVersion, Option<Vec<u8>>), String>;

    /// A loopback HTTPS server speaking only `versions`; answers every request `{}`.
    async fn server(
        pki: &Pki,
        versions: &[&'static SupportedProtocolVersion],
    ) -> (u16, mpsc::UnboundedReceiver<Seen>) {
        server_with(pki, versions, rustls::crypto::ring::default_provider()).await
    }

    async fn server_with(
        pki: &Pki,
        versions: &[&'static SupportedProtocolVersion],
        provider: rustls::crypto::CryptoProvider,
    ) -> (u16, mpsc::UnboundedReceiver<Seen>) {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), pki.key.clone_key())
            .unwrap();
        // Picks `http/1.1` only if the client offers it (what reqwest's own set-up did).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => return drop(tx.send(Err(e.to_string()))),
                    };
                    let (_, conn) = tls.get_ref();
                    let seen = (
                        conn.protocol_version().unwrap(),
                        conn.alpn_protocol().map(<[u8]>::to_vec),
                    );
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                              content-length: 2\r\nconnection: close\r\n\r\n{}",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                    let _ = tx.send(Ok(seen));
                });
            }
        });
        (port, rx)
    }

    fn transport(port: u16, roots: &[CertificateDer<'static>]) -> Transport {
        let config = ClientConfig::new(format!("https://127.0.0.1:{port}"), "test-app", "unused");
        Transport::with_roots(&config, roots).unwrap()
    }

    async fn get(t: &Transport) -> crate::error::Result<u16> {
        let req = Request::new(Method::GET, "ping").unauthenticated();
        let deadline = Instant::now() + Duration::from_secs(10);
        Ok(t.send(&req, None, deadline).await?.status().as_u16())
    }

    /// One full request over TLS 1.3 with a chain of `ca_alg` / `leaf_alg` keys.
    async fn handshake(
        ca_alg: Option<&'static SignatureAlgorithm>,
        leaf_alg: Option<&'static SignatureAlgorithm>,
    ) {
        let pki = pki(ca_alg, leaf_alg);
        let (port, mut seen) = server(&pki, &[&rustls::version::TLS13]).await;
        let status = get(&transport(port, std::slice::from_ref(&pki.ca))).await;
        assert_eq!(status.unwrap(), 200);
        let (version, alpn) = seen.recv().await.unwrap().unwrap();
        assert_eq!(version, ProtocolVersion::TLSv1_3);
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[tokio::test]
    async fn tls13_with_an_ecdsa_p256_chain() {
        handshake(
            Some(&rcgen::PKCS_ECDSA_P256_SHA256),
            Some(&rcgen::PKCS_ECDSA_P256_SHA256),
        )
        .await;
    }

    #[tokio::test]
    async fn tls13_with_an_ecdsa_p384_chain() {
        handshake(
            Some(&rcgen::PKCS_ECDSA_P384_SHA384),
            Some(&rcgen::PKCS_ECDSA_P384_SHA384),
        )
        .await;
    }

    /// RSA PKCS#1 on the certificate, RSA-PSS on the handshake (TLS 1.3's only RSA one).
    #[tokio::test]
    async fn tls13_with_an_rsa_chain() {
        handshake(None, None).await;
    }

    /// A chain of P-256 keys (the tests of a refusal vary something else).
    fn p256() -> Pki {
        pki(
            Some(&rcgen::PKCS_ECDSA_P256_SHA256),
            Some(&rcgen::PKCS_ECDSA_P256_SHA256),
        )
    }

    /// One request to `port` trusting `roots`, which must be refused as a `Connect`
    /// failure: the error and its message.
    async fn refused(port: u16, roots: &[CertificateDer<'static>]) -> (Error, String) {
        let err = get(&transport(port, roots)).await.unwrap_err();
        let message = match &err {
            Error::Network {
                kind: NetworkFailure::Connect,
                message,
            } => message.clone(),
            other => panic!("expected a Connect failure, got {other:?}"),
        };
        (err, message)
    }

    /// No public CA issues Ed25519 certificates, so the client does not offer it: a
    /// server with only an Ed25519 key has no signature the client accepts.
    #[tokio::test]
    async fn an_ed25519_server_key_is_refused() {
        let pki = pki(
            Some(&rcgen::PKCS_ECDSA_P256_SHA256),
            Some(&rcgen::PKCS_ED25519),
        );
        let (port, _seen) = server(&pki, &[&rustls::version::TLS13]).await;
        let (_, message) = refused(port, std::slice::from_ref(&pki.ca)).await;
        assert!(message.contains("HandshakeFailure"), "{message}");
    }

    #[tokio::test]
    async fn a_server_without_tls13_is_refused_with_a_connect_error_naming_the_cause() {
        let pki = p256();
        let (port, mut seen) = server(&pki, &[&rustls::version::TLS12]).await;
        let (err, message) = refused(port, std::slice::from_ref(&pki.ca)).await;
        assert!(message.contains("ProtocolVersion"), "{message}");
        // Refused, not merely failed: the server saw a client it shares no version with.
        let server_side = seen.recv().await.unwrap().unwrap_err();
        assert!(
            server_side.contains("Tls12NotOfferedOrEnabled"),
            "{server_side}"
        );
        // A request that never left may be retried: the retry policy sees a Connect failure.
        assert!(!err.may_have_reached_server());
    }

    /// The client offers AES-GCM only (see `provider`).
    #[tokio::test]
    async fn a_server_with_only_chacha20_is_refused() {
        let pki = p256();
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
            ..rustls::crypto::ring::default_provider()
        };
        let (port, _seen) = server_with(&pki, &[&rustls::version::TLS13], provider).await;
        let (_, message) = refused(port, std::slice::from_ref(&pki.ca)).await;
        assert!(message.contains("HandshakeFailure"), "{message}");
    }

    #[tokio::test]
    async fn a_server_whose_ca_is_not_trusted_is_refused() {
        let (port, _seen) = server(&p256(), &[&rustls::version::TLS13]).await;
        let (_, message) = refused(port, &[]).await;
        assert!(message.contains("UnknownIssuer"), "{message}");
    }
}
