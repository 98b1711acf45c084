// A signed lookup against Yiwang Gateway with nothing but Go's standard library (1.19+):
// sign the request (ES256 JWS), send it, verify the answer against the gateway's JWKS.
//
//	go run lookup.go BASE_URL DEPARTMENT KEY_FILE RESOURCE SUBJECT FIELDS ITEM CASE REASON OPERATOR
//	go run lookup.go http://127.0.0.1:8080 service-centre keys/departments/service-centre.private.jwk.json \
//	    enterprise-registration uscc:91430671AUDLE3UHM0 name,status 000201002000 BJ-2026-0001 \
//	    企业变更登记核验营业执照 clerk-017
//
// Prints the verified answer's claims (JSON) and exits 0; a refusal prints the problem
// (RFC 9457) and exits 1; an answer that does not verify exits 2. The gateway's id (the
// request's "aud", the answer's "iss") is GATEWAY_ID in the environment, default yiwang-gateway.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"
)

const (
	requestTyp      = "yiwang-lookup+jwt"
	answerTyp       = "yiwang-lookup-result+jwt"
	lifetimeSeconds = 120 // the gateway takes at most 300
	leewaySeconds   = 30
)

// jwk is the part of a JSON Web Key this example reads (EC P-256).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

// answerClaims are the claims of a lookup answer this example checks; the rest is printed.
type answerClaims struct {
	Iss     string `json:"iss"`
	Aud     string `json:"aud"`
	Exp     int64  `json:"exp"`
	Request struct {
		Jti    string `json:"jti"`
		Sha256 string `json:"sha256"`
	} `json:"request"`
}

func main() {
	if len(os.Args) != 11 {
		fmt.Fprintln(os.Stderr, "usage: go run lookup.go BASE_URL DEPARTMENT KEY_FILE RESOURCE "+
			"SUBJECT(type:id) FIELDS(a,b) ITEM CASE REASON OPERATOR")
		os.Exit(64)
	}
	a := os.Args[1:]
	baseURL, department := a[0], a[1]
	gatewayID := os.Getenv("GATEWAY_ID")
	if gatewayID == "" {
		gatewayID = "yiwang-gateway"
	}
	key, kid, err := loadPrivateKey(a[2])
	check(err)
	subject := strings.SplitN(a[4], ":", 2)
	if len(subject) != 2 {
		check(errors.New("SUBJECT is type:id, e.g. uscc:91430671AUDLE3UHM0"))
	}

	// 1. The claims: registered ones (whole seconds, a fresh jti), then the lookup's own.
	now := time.Now().Unix()
	jti := randomID()
	claims := map[string]any{
		"iss": department, "aud": gatewayID, "iat": now, "exp": now + lifetimeSeconds, "jti": jti,
		"purpose":  map[string]string{"item": a[6], "case": a[7], "reason": a[8]},
		"operator": a[9],
		"query": map[string]any{
			"resource": a[3],
			"subject":  map[string]string{"type": subject[0], "id": subject[1]},
			"fields":   strings.Split(a[5], ","),
		},
	}

	// 2. Sign: header alg, typ and kid only (the gateway refuses jwk, jku, x5u, x5c, crit).
	token, err := sign(map[string]string{"alg": "ES256", "typ": requestTyp, "kid": kid}, claims, key)
	check(err)

	// 3. Send it: the compact JWS is the body, as application/jwt.
	client := &http.Client{Timeout: 30 * time.Second}
	response, err := client.Post(baseURL+"/v1/lookups", "application/jwt", strings.NewReader(token))
	check(err)
	body, err := io.ReadAll(response.Body)
	response.Body.Close()
	check(err)
	if response.StatusCode != http.StatusOK {
		// RFC 9457 problem details: type, title, status, and field/reason/audit_index.
		// A 401 is opaque on purpose: ask POST /v1/refusals for the precise reason.
		fmt.Println(string(body))
		os.Exit(1)
	}

	// 4. Verify the answer before believing a byte of it.
	jwksResponse, err := client.Get(baseURL + "/.well-known/jwks.json")
	check(err)
	jwks, err := io.ReadAll(jwksResponse.Body)
	jwksResponse.Body.Close()
	check(err)
	verified, err := verifyAnswer(string(body), jwks, token, jti, department, gatewayID, time.Now().Unix())
	if err != nil {
		fmt.Fprintln(os.Stderr, "answer rejected:", err)
		os.Exit(2)
	}
	fmt.Println(string(verified))
}

// verifyAnswer returns the answer's payload (JSON) once its signature, header and claims have
// all been checked.
func verifyAnswer(answer string, jwks []byte, requestToken, jti, department, gatewayID string, now int64) ([]byte, error) {
	parts := strings.Split(strings.TrimSpace(answer), ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	var header struct{ Alg, Typ, Kid string }
	if err := decodeSegment(parts[0], &header); err != nil {
		return nil, err
	}
	if header.Alg != "ES256" {
		return nil, errors.New("alg is not ES256")
	}
	if header.Typ != answerTyp {
		return nil, errors.New("wrong typ")
	}
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, err
	}
	var public *ecdsa.PublicKey
	for _, k := range set.Keys {
		if k.Kid == header.Kid && header.Kid != "" {
			p, err := publicKey(k)
			if err != nil {
				return nil, err
			}
			public = p
		}
	}
	if public == nil {
		return nil, errors.New("kid not in the gateway's JWKS")
	}
	signature, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(signature) != 64 {
		return nil, errors.New("bad signature")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(signature[:32]), new(big.Int).SetBytes(signature[32:])
	if !ecdsa.Verify(public, digest[:], r, s) {
		return nil, errors.New("bad signature")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims answerClaims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, err
	}
	if claims.Iss != gatewayID {
		return nil, errors.New("wrong iss")
	}
	if claims.Aud != department {
		return nil, errors.New("not for us")
	}
	if claims.Exp < now-leewaySeconds {
		return nil, errors.New("expired")
	}
	// The answer is bound to the request it answers: its jti and the token's SHA-256.
	requestHash := sha256.Sum256([]byte(requestToken))
	if claims.Request.Jti != jti || claims.Request.Sha256 != hex.EncodeToString(requestHash[:]) {
		return nil, errors.New("answers another request")
	}
	return payload, nil
}

func sign(header map[string]string, claims map[string]any, key *ecdsa.PrivateKey) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64(h) + "." + b64(c)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return "", err
	}
	// JWS wants r || s, each left-padded to 32 bytes (RFC 7518 §3.4), not ASN.1 DER.
	signature := make([]byte, 64)
	r.FillBytes(signature[:32])
	s.FillBytes(signature[32:])
	return input + "." + b64(signature), nil
}

// marshal is json.Marshal without HTML escaping (the gateway takes either; this keeps the
// claims readable).
func marshal(value any) ([]byte, error) {
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimRight(out.Bytes(), "\n"), nil
}

func loadPrivateKey(path string) (*ecdsa.PrivateKey, string, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	var k jwk
	if err := json.Unmarshal(text, &k); err != nil {
		return nil, "", err
	}
	public, err := publicKey(k)
	if err != nil {
		return nil, "", err
	}
	d, err := base64.RawURLEncoding.DecodeString(k.D)
	if err != nil {
		return nil, "", err
	}
	return &ecdsa.PrivateKey{PublicKey: *public, D: new(big.Int).SetBytes(d)}, k.Kid, nil
}

func publicKey(k jwk) (*ecdsa.PublicKey, error) {
	if k.Kty != "EC" || k.Crv != "P-256" {
		return nil, errors.New("this example uses EC P-256 keys (ES256)")
	}
	x, errX := base64.RawURLEncoding.DecodeString(k.X)
	y, errY := base64.RawURLEncoding.DecodeString(k.Y)
	if errX != nil || errY != nil {
		return nil, errors.New("bad EC coordinates")
	}
	curve := elliptic.P256()
	px, py := new(big.Int).SetBytes(x), new(big.Int).SetBytes(y)
	if !curve.IsOnCurve(px, py) {
		return nil, errors.New("point not on P-256")
	}
	return &ecdsa.PublicKey{Curve: curve, X: px, Y: py}, nil
}

func decodeSegment(segment string, into any) error {
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

func b64(data []byte) string {
	return base64.RawURLEncoding.EncodeToString(data)
}

func randomID() string {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		panic(err)
	}
	return hex.EncodeToString(id)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
}
