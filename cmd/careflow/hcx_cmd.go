package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
)

const hcxUsage = "decrypt --key KEY.pem [FILE|-] | encrypt --cert CERT.pem --header NAME=VALUE... [FILE|-]"

// maxHcxInput bounds what the hcx command reads.
const maxHcxInput = 16 << 20

func printHcxHelp(w io.Writer) {
	fmt.Fprint(w, `
Decrypt flags:
  --key KEY.pem
      the recipient's RSA private key (PKCS #8 or PKCS #1 PEM); a file of
      several keys (a rotation) tries each
Encrypt flags:
  --cert CERT.pem
      the recipient's certificate (it must be valid now)
  --header NAME=VALUE
      an x-hcx-* protected header, repeatable; NAME with or without the
      x-hcx- prefix (sender_code=..., x-hcx-correlation_id=...). VALUE of
      error_details and debug_details is JSON. x-hcx-timestamp defaults to
      now and x-hcx-api_call_id to a new UUID.

decrypt reads a compact JWE or an HCX body {"payload": "..."} from FILE
(or standard input) and prints the decrypted payload on standard output and
the protected header on standard error. encrypt reads the payload and
prints the HCX body {"payload": "<compact JWE>"}: RSA-OAEP-256 with
A256GCM. Both refuse what the protocol refuses, naming the rule.
`)
}

// runHcx is `careflow hcx decrypt|encrypt`: the HCX codec by hand, for
// looking into a recorded exchange or making a message to send with curl.
func runHcx(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || (args[0] != "decrypt" && args[0] != "encrypt") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return helpFor("hcx", stdout, stderr)
		}
		fmt.Fprint(stderr, "careflow hcx: say decrypt or encrypt; run 'careflow help hcx'.\n")
		return 2
	}
	sub := args[0]
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "careflow hcx %s: %s.\n", sub, strings.TrimSuffix(fmt.Sprintf(format, a...), "."))
		return code
	}
	fs := flag.NewFlagSet("hcx "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("key", "", "")
	certFile := fs.String("cert", "", "")
	var headers headerFlags
	fs.Var(&headers, "header", "")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpFor("hcx", stdout, stderr)
		}
		return fail(2, "%v", err)
	}
	if fs.NArg() > 1 {
		return fail(2, "one input at most (a FILE or - for standard input)")
	}
	input := "-"
	if fs.NArg() == 1 {
		input = fs.Arg(0)
	}
	in, err := readInput(input)
	if err != nil {
		return fail(1, "%v", err)
	}
	switch sub {
	case "decrypt":
		if *keyFile == "" || *certFile != "" || len(headers) > 0 {
			return fail(2, "decrypt takes --key KEY.pem only")
		}
		return hcxDecrypt(*keyFile, in, stdout, stderr, fail)
	default:
		if *certFile == "" || *keyFile != "" {
			return fail(2, "encrypt takes --cert CERT.pem and --header NAME=VALUE")
		}
		return hcxEncrypt(*certFile, headers, in, time.Now(), stdout, fail)
	}
}

func readInput(name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open the input: %w", errors.Unwrap(err))
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxHcxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read the input: %w", err)
	}
	if len(b) > maxHcxInput {
		return nil, fmt.Errorf("the input is over %d bytes", maxHcxInput)
	}
	return b, nil
}

func hcxDecrypt(keyFile string, in []byte, stdout, stderr io.Writer, fail func(int, string, ...any) int) int {
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return fail(1, "read the key: %v", errors.Unwrap(err))
	}
	keys, err := hcx.ParsePrivateKeysPEM(kb)
	if err != nil {
		return fail(1, "%v", err)
	}
	compact := strings.TrimSpace(string(in))
	if strings.HasPrefix(compact, "{") {
		if compact, err = hcx.ParseBody(in); err != nil {
			return fail(1, "%v", protocolMessage(err))
		}
	}
	h, payload, err := hcx.Decrypt(compact, keys)
	if err != nil {
		return fail(1, "%v", protocolMessage(err))
	}
	hb, _ := json.MarshalIndent(h.Fields(), "", "  ")
	fmt.Fprintf(stderr, "%s\n", hb)
	if _, err := stdout.Write(payload); err != nil {
		return fail(1, "write the payload: %v", err)
	}
	if len(payload) == 0 || payload[len(payload)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	return 0
}

func hcxEncrypt(certFile string, headers headerFlags, payload []byte, now time.Time, stdout io.Writer, fail func(int, string, ...any) int) int {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return fail(1, "read the certificate: %v", errors.Unwrap(err))
	}
	cert, err := hcx.ParseCertificatePEM(cb)
	if err != nil {
		return fail(1, "%v", err)
	}
	pub, err := hcx.RecipientKey(cert, now)
	if err != nil {
		return fail(1, "%v", err)
	}
	fields := map[string]json.RawMessage{}
	for _, kv := range headers {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "x-hcx-") {
			name = "x-hcx-" + name
		}
		switch name {
		case hcx.HeaderErrorDetails, hcx.HeaderDebugDetails:
			if !json.Valid([]byte(value)) {
				return fail(2, "--header %s: the value must be JSON", name)
			}
			fields[name] = json.RawMessage(value)
		default:
			fields[name], _ = json.Marshal(value)
		}
	}
	if _, ok := fields[hcx.HeaderTimestamp]; !ok {
		fields[hcx.HeaderTimestamp], _ = json.Marshal(hcx.FormatTimestamp(now))
	}
	if _, ok := fields[hcx.HeaderAPICallID]; !ok {
		fields[hcx.HeaderAPICallID], _ = json.Marshal(uuid.NewString())
	}
	h, err := hcx.ParseHeaderFields(fields)
	if err != nil {
		return fail(2, "%v", protocolMessage(err))
	}
	compact, err := hcx.Encrypt(h, payload, pub)
	if err != nil {
		return fail(2, "%v", protocolMessage(err))
	}
	fmt.Fprintf(stdout, "%s\n", hcx.MarshalBody(compact))
	return 0
}

// protocolMessage says a codec refusal as "CODE: rule".
func protocolMessage(err error) string {
	var pe *payer.Error
	if errors.As(err, &pe) {
		return pe.Code + ": " + pe.Message
	}
	return err.Error()
}

// headerFlags collects repeated --header NAME=VALUE.
type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ",") }

func (h *headerFlags) Set(v string) error {
	name, _, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return errors.New("--header wants NAME=VALUE")
	}
	*h = append(*h, v)
	return nil
}
