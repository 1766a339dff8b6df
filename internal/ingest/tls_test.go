package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/capturepb"
)

// testPKI contains the paths of the PEM files of a private CA, a server
// certificate for 127.0.0.1 and a client certificate signed by that CA.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

// newTestPKI writes a fresh CA and its server and client certificates to a
// temporary directory, so that no system root can verify them.
func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	pki := testPKI{
		caFile:     filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client-key.pem"),
	}
	notBefore := time.Now().Add(-time.Hour)
	notAfter := time.Now().Add(24 * time.Hour)

	caKey := newTestKey(t)
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "collectord test CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("parse CA certificate: %v", err)
	}
	writePEM(t, pki.caFile, "CERTIFICATE", caDER)

	serverTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	writeSignedPair(t, serverTemplate, caCert, caKey, pki.serverCert, pki.serverKey)

	clientTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "collectord test client"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	writeSignedPair(t, clientTemplate, caCert, caKey, pki.clientCert, pki.clientKey)

	return pki
}

func newTestKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return key
}

// writeSignedPair signs template with the CA and writes the certificate and
// its new private key as PEM files.
func writeSignedPair(t *testing.T, template, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile string) {
	t.Helper()
	key := newTestKey(t)
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", template.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key of %s: %v", template.Subject.CommonName, err)
	}
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
}

func writePEM(t *testing.T, path, blockType string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// startTestServer starts a JetStream server on a random loopback port and
// returns its host:port. With pki set it requires TLS, and with
// verifyClients also a client certificate signed by the test CA.
func startTestServer(t *testing.T, pki *testPKI, verifyClients bool) string {
	t.Helper()
	opts := &server.Options{
		ServerName:         "tls-test",
		Host:               "127.0.0.1",
		Port:               -1,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           t.TempDir(),
		JetStreamMaxStore:  64 << 20,
		JetStreamMaxMemory: 8 << 20,
	}
	if pki != nil {
		tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: pki.serverCert,
			KeyFile:  pki.serverKey,
			CaFile:   pki.caFile,
			Verify:   verifyClients,
		})
		if err != nil {
			t.Fatalf("server TLS config: %v", err)
		}
		opts.TLS = true
		opts.TLSVerify = verifyClients
		opts.TLSConfig = tlsConfig
	}

	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("configure NATS server: %v", err)
	}
	// Rejected handshakes are what some cases test, so the server's
	// warnings about them are expected.
	s.SetLoggerV2(&serverLogger{logger: slog.New(slog.DiscardHandler)}, false, false, false)
	s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return s.Addr().String()
}

// connectTLSTest connects like collectord does and closes the connection at
// the end of the test.
func connectTLSTest(t *testing.T, cfg ExternalConfig) (*nats.Conn, error) {
	t.Helper()
	cfg.Name = "collectord-tls-test"
	cfg.ConnectTimeout = 5 * time.Second
	nc, err := Connect(cfg)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// requireCaptureRoundTrip opens the queue, publishes one record on its
// capture subject and reads it back from the capture stream.
func requireCaptureRoundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	q, err := OpenQueue(ctx, nc, QueueConfig{Prefix: "tlstest", MaxBytes: 8 << 20, DeadLetterMaxBytes: 1 << 20})
	if err != nil {
		t.Fatalf("OpenQueue over TLS: %v", err)
	}

	rec := newRecord("u1", "a1", "c1", 1)
	data, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	subject := q.Subject(rec.GetUserId(), rec.GetAppId())
	if _, err := q.JetStream().Publish(ctx, subject, data); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}

	// The capture stream is a work queue, which allows no second consumer
	// beside the workers' one, so the record is read with a direct get.
	stream, err := q.JetStream().Stream(ctx, q.StreamName())
	if err != nil {
		t.Fatalf("stream %s: %v", q.StreamName(), err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatalf("read the record back: %v", err)
	}
	got := &capturepb.Record{}
	if err := proto.Unmarshal(msg.Data, got); err != nil {
		t.Fatalf("message is not a record: %v", err)
	}
	if got.GetId() != rec.GetId() {
		t.Errorf("read record %q, want %q", got.GetId(), rec.GetId())
	}
}

func TestConnectTLS_PrivateCA(t *testing.T) {
	pki := newTestPKI(t)
	addr := startTestServer(t, &pki, false)

	// nats:// on purpose: the CA file alone must make the client use TLS.
	nc, err := connectTLSTest(t, ExternalConfig{URL: "nats://" + addr, TLSCAFile: pki.caFile})
	if err != nil {
		t.Fatalf("Connect with the CA file: %v", err)
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("connection is not TLS: %v", err)
	}
	requireCaptureRoundTrip(t, nc)
}

func TestConnectTLS_UnknownAuthorityWithoutCA(t *testing.T) {
	pki := newTestPKI(t)
	addr := startTestServer(t, &pki, false)

	_, err := connectTLSTest(t, ExternalConfig{URL: "tls://" + addr})
	if err == nil {
		t.Fatal("Connect without the CA file succeeded, want an unknown authority error")
	}
	var unknownAuthority x509.UnknownAuthorityError
	if !errors.As(err, &unknownAuthority) {
		t.Errorf("error %q is not an x509.UnknownAuthorityError", err)
	}
}

func TestConnectTLS_CARequiresTLS(t *testing.T) {
	pki := newTestPKI(t)
	addr := startTestServer(t, nil, false)

	_, err := connectTLSTest(t, ExternalConfig{URL: "nats://" + addr, TLSCAFile: pki.caFile})
	if err == nil {
		t.Fatal("Connect with a CA file to a server without TLS succeeded, want an error")
	}
	if !errors.Is(err, nats.ErrSecureConnWanted) {
		t.Errorf("error %q, want %q", err, nats.ErrSecureConnWanted)
	}
}

func TestConnectTLS_ClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	addr := startTestServer(t, &pki, true)
	url := "tls://" + addr

	// The error text is not checked: in TLS 1.3 the client may see the
	// server's "certificate required" alert or only the closed connection,
	// depending on which arrives first. TestConnectTLS_PrivateCA shows that
	// the same settings work once the server stops requiring a certificate.
	if _, err := connectTLSTest(t, ExternalConfig{URL: url, TLSCAFile: pki.caFile}); err == nil {
		t.Error("Connect without a client certificate succeeded, want the server to reject it")
	}

	nc, err := connectTLSTest(t, ExternalConfig{
		URL:         url,
		TLSCAFile:   pki.caFile,
		TLSCertFile: pki.clientCert,
		TLSKeyFile:  pki.clientKey,
	})
	if err != nil {
		t.Fatalf("Connect with the client certificate: %v", err)
	}
	requireCaptureRoundTrip(t, nc)
}

func TestConnectTLS_BadFilesNamed(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing-ca.pem")
	notPEM := filepath.Join(dir, "not-pem.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// No server runs: each case must fail on its file before dialing.
	const url = "tls://127.0.0.1:1"
	cases := []struct {
		name string
		cfg  ExternalConfig
		file string
	}{
		{"missing CA", ExternalConfig{URL: url, TLSCAFile: missing}, missing},
		{"CA not PEM", ExternalConfig{URL: url, TLSCAFile: notPEM}, notPEM},
		{"missing client cert", ExternalConfig{URL: url, TLSCAFile: pki.caFile, TLSCertFile: missing, TLSKeyFile: pki.clientKey}, missing},
		{"client cert not PEM", ExternalConfig{URL: url, TLSCAFile: pki.caFile, TLSCertFile: notPEM, TLSKeyFile: pki.clientKey}, notPEM},
		{"key of another cert", ExternalConfig{URL: url, TLSCAFile: pki.caFile, TLSCertFile: pki.clientCert, TLSKeyFile: pki.serverKey}, pki.serverKey},
		{"cert without key", ExternalConfig{URL: url, TLSCertFile: pki.clientCert}, pki.clientCert},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := connectTLSTest(t, tc.cfg)
			if err == nil {
				t.Fatal("Connect succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %q does not name %s", err, tc.file)
			}
			if strings.Contains(err.Error(), "check that the server is running") {
				t.Errorf("error %q blames the server for a local file", err)
			}
		})
	}
}
