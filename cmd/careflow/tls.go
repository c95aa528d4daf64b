package main

import (
	"crypto/tls"
	"net"
	"net/http"
)

// tlsConfig is TLS 1.2 or newer with forward-secret AEAD suites only (TLS
// 1.3's suites are not configurable and all qualify).
func tlsConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// serveListener serves plain HTTP, or HTTPS when the config names a
// certificate. The certificate is loaded before serving so that a bad file
// fails the start, not the first handshake.
func serveListener(srv *http.Server, ln net.Listener, cfg Config) error {
	if cfg.Auth.TLSCert == "" {
		return srv.Serve(ln)
	}
	cert, err := tls.LoadX509KeyPair(cfg.Auth.TLSCert, cfg.Auth.TLSKey)
	if err != nil {
		ln.Close()
		return err
	}
	srv.TLSConfig = tlsConfig(cert)
	return srv.ServeTLS(ln, "", "")
}
