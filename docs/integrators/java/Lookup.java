// A signed lookup against Yiwang Gateway with nothing but the JDK (17 or later):
// sign the request (ES256 JWS), send it, verify the answer against the gateway's JWKS.
//
//   java Lookup.java BASE_URL DEPARTMENT KEY_FILE RESOURCE SUBJECT FIELDS ITEM CASE REASON OPERATOR
//   java Lookup.java http://127.0.0.1:8080 service-centre keys/departments/service-centre.private.jwk.json \
//       enterprise-registration uscc:91430671AUDLE3UHM0 name,status 000201002000 BJ-2026-0001 \
//       企业变更登记核验营业执照 clerk-017
//
// Prints the verified answer's claims (JSON) and exits 0; a refusal prints the problem
// (RFC 9457) and exits 1; an answer that does not verify exits 2. The gateway's id (the
// request's "aud", the answer's "iss") is GATEWAY_ID in the environment, default yiwang-gateway.

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.AlgorithmParameters;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPrivateKeySpec;
import java.security.spec.ECPublicKeySpec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

public final class Lookup {
    static final String REQUEST_TYP = "yiwang-lookup+jwt";
    static final String ANSWER_TYP = "yiwang-lookup-result+jwt";
    static final long LIFETIME_SECONDS = 120; // the gateway takes at most 300
    static final long LEEWAY_SECONDS = 30;

    public static void main(String[] args) throws Exception {
        if (args.length != 10) {
            System.err.println("usage: java Lookup.java BASE_URL DEPARTMENT KEY_FILE RESOURCE "
                    + "SUBJECT(type:id) FIELDS(a,b) ITEM CASE REASON OPERATOR");
            System.exit(64);
        }
        // Answers carry Chinese text: print UTF-8 whatever the platform's default.
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true,
                StandardCharsets.UTF_8);
        String baseUrl = args[0], department = args[1];
        String gatewayId = System.getenv().getOrDefault("GATEWAY_ID", "yiwang-gateway");
        Map<String, Object> jwk = Json.object(Json.parse(Files.readString(Path.of(args[2]))));
        String[] subject = args[4].split(":", 2);

        // 1. The claims: registered ones (whole seconds, a fresh jti), then the lookup's own.
        long now = System.currentTimeMillis() / 1000;
        String jti = UUID.randomUUID().toString();
        Map<String, Object> claims = new LinkedHashMap<>();
        claims.put("iss", department);
        claims.put("aud", gatewayId);
        claims.put("iat", now);
        claims.put("exp", now + LIFETIME_SECONDS);
        claims.put("jti", jti);
        claims.put("purpose", Map.of("item", args[6], "case", args[7], "reason", args[8]));
        claims.put("operator", args[9]);
        claims.put("query", Map.of(
                "resource", args[3],
                "subject", Map.of("type", subject[0], "id", subject[1]),
                "fields", List.of(args[5].split(","))));

        // 2. Sign: header alg, typ and kid only (the gateway refuses jwk, jku, x5u, x5c, crit).
        Map<String, Object> header = new LinkedHashMap<>();
        header.put("alg", "ES256");
        header.put("typ", REQUEST_TYP);
        header.put("kid", jwk.get("kid"));
        String signingInput = b64(Json.write(header)) + "." + b64(Json.write(claims));
        Signature signer = Signature.getInstance("SHA256withECDSAinP1363Format"); // r || s
        signer.initSign(privateKey(jwk));
        signer.update(signingInput.getBytes(StandardCharsets.US_ASCII));
        String token = signingInput + "." + b64(signer.sign());

        // 3. Send it: the compact JWS is the body, as application/jwt.
        // HTTP/1.1: the JDK client otherwise asks a plain-http server to upgrade to h2c.
        HttpClient http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .build();
        HttpResponse<String> response = http.send(
                HttpRequest.newBuilder(URI.create(baseUrl + "/v1/lookups"))
                        .header("Content-Type", "application/jwt")
                        .timeout(Duration.ofSeconds(30))
                        .POST(HttpRequest.BodyPublishers.ofString(token, StandardCharsets.US_ASCII))
                        .build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        if (response.statusCode() != 200) {
            // RFC 9457 problem details: type, title, status, and field/reason/audit_index.
            // A 401 is opaque on purpose: ask POST /v1/refusals for the precise reason.
            out.println(response.body());
            System.exit(1);
        }

        // 4. Verify the answer before believing a byte of it.
        String jwks = http.send(
                HttpRequest.newBuilder(URI.create(baseUrl + "/.well-known/jwks.json")).build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8)).body();
        Map<String, Object> answer;
        try {
            answer = verifyAnswer(response.body(), Json.parse(jwks), token, jti, department,
                    gatewayId, System.currentTimeMillis() / 1000);
        } catch (SecurityException e) {
            System.err.println("answer rejected: " + e.getMessage());
            System.exit(2);
            return;
        }
        out.println(Json.write(answer));
    }

    /** The answer's claims, once its signature, header and claims have all been checked. */
    static Map<String, Object> verifyAnswer(String answer, Object jwks, String requestToken,
            String jti, String department, String gatewayId, long now) throws Exception {
        String[] parts = answer.trim().split("\\.", -1);
        if (parts.length != 3) throw new SecurityException("not a compact JWS");
        Map<String, Object> header = Json.object(Json.parse(unb64(parts[0])));
        if (!"ES256".equals(header.get("alg"))) throw new SecurityException("alg is not ES256");
        if (!ANSWER_TYP.equals(header.get("typ"))) throw new SecurityException("wrong typ");
        Map<String, Object> key = null;
        for (Object k : Json.array(Json.object(jwks).get("keys"))) {
            if (header.get("kid") != null && header.get("kid").equals(Json.object(k).get("kid"))) {
                key = Json.object(k);
            }
        }
        if (key == null) throw new SecurityException("kid not in the gateway's JWKS");
        Signature verifier = Signature.getInstance("SHA256withECDSAinP1363Format");
        verifier.initVerify(publicKey(key));
        verifier.update((parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII));
        if (!verifier.verify(Base64.getUrlDecoder().decode(parts[2]))) {
            throw new SecurityException("bad signature");
        }
        Map<String, Object> claims = Json.object(Json.parse(unb64(parts[1])));
        if (!gatewayId.equals(claims.get("iss"))) throw new SecurityException("wrong iss");
        if (!department.equals(claims.get("aud"))) throw new SecurityException("not for us");
        if (((Number) claims.get("exp")).longValue() < now - LEEWAY_SECONDS) {
            throw new SecurityException("expired");
        }
        // The answer is bound to the request it answers: its jti and the token's SHA-256.
        Map<String, Object> request = Json.object(claims.get("request"));
        String sha256 = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(requestToken.getBytes(StandardCharsets.US_ASCII)));
        if (!jti.equals(request.get("jti")) || !sha256.equals(request.get("sha256"))) {
            throw new SecurityException("answers another request");
        }
        return claims;
    }

    static PrivateKey privateKey(Map<String, Object> jwk) throws Exception {
        if (!"EC".equals(jwk.get("kty")) || !"P-256".equals(jwk.get("crv"))) {
            throw new IllegalArgumentException("this example signs with an EC P-256 key (ES256)");
        }
        return KeyFactory.getInstance("EC").generatePrivate(
                new ECPrivateKeySpec(unsigned((String) jwk.get("d")), p256()));
    }

    static PublicKey publicKey(Map<String, Object> jwk) throws Exception {
        ECPoint point = new ECPoint(unsigned((String) jwk.get("x")), unsigned((String) jwk.get("y")));
        return KeyFactory.getInstance("EC").generatePublic(new ECPublicKeySpec(point, p256()));
    }

    static ECParameterSpec p256() throws Exception {
        AlgorithmParameters parameters = AlgorithmParameters.getInstance("EC");
        parameters.init(new ECGenParameterSpec("secp256r1"));
        return parameters.getParameterSpec(ECParameterSpec.class);
    }

    static BigInteger unsigned(String base64url) {
        return new BigInteger(1, Base64.getUrlDecoder().decode(base64url));
    }

    static String b64(String text) {
        return b64(text.getBytes(StandardCharsets.UTF_8));
    }

    static String b64(byte[] bytes) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
    }

    static String unb64(String part) {
        return new String(Base64.getUrlDecoder().decode(part), StandardCharsets.UTF_8);
    }

    /** Just enough JSON for this exchange (the JDK has none): objects, arrays, strings,
     *  integers and decimals, true, false, null. Use your project's JSON library instead. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) {
            this.s = s;
        }

        static Object parse(String text) {
            Json p = new Json(text);
            Object value = p.value();
            p.space();
            if (p.i != text.length()) throw new IllegalArgumentException("trailing JSON");
            return value;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> object(Object value) {
            if (!(value instanceof Map)) throw new SecurityException("expected a JSON object");
            return (Map<String, Object>) value;
        }

        @SuppressWarnings("unchecked")
        static List<Object> array(Object value) {
            if (!(value instanceof List)) throw new SecurityException("expected a JSON array");
            return (List<Object>) value;
        }

        static String write(Object value) {
            StringBuilder out = new StringBuilder();
            write(value, out);
            return out.toString();
        }

        private static void write(Object value, StringBuilder out) {
            if (value == null) {
                out.append("null");
            } else if (value instanceof String text) {
                out.append('"');
                for (char c : text.toCharArray()) {
                    switch (c) {
                        case '"' -> out.append("\\\"");
                        case '\\' -> out.append("\\\\");
                        default -> {
                            if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                            else out.append(c);
                        }
                    }
                }
                out.append('"');
            } else if (value instanceof Map<?, ?> map) {
                out.append('{');
                String sep = "";
                for (Map.Entry<?, ?> e : map.entrySet()) {
                    out.append(sep);
                    write(e.getKey().toString(), out);
                    out.append(':');
                    write(e.getValue(), out);
                    sep = ",";
                }
                out.append('}');
            } else if (value instanceof List<?> list) {
                out.append('[');
                String sep = "";
                for (Object item : list) {
                    out.append(sep);
                    write(item, out);
                    sep = ",";
                }
                out.append(']');
            } else {
                out.append(value); // Long, Double, Boolean
            }
        }

        private void space() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++;
        }

        private Object value() {
            space();
            if (i >= s.length()) throw new IllegalArgumentException("truncated JSON");
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                space();
                if (s.charAt(i) == '}') {
                    i++;
                    return map;
                }
                while (true) {
                    space();
                    String key = string();
                    space();
                    expect(':');
                    map.put(key, value());
                    space();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect('}');
                        return map;
                    }
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                space();
                if (s.charAt(i) == ']') {
                    i++;
                    return list;
                }
                while (true) {
                    list.add(value());
                    space();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect(']');
                        return list;
                    }
                }
            }
            if (c == '"') return string();
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String number = s.substring(start, i);
            if (number.isEmpty()) throw new IllegalArgumentException("bad JSON at " + start);
            return number.matches("-?\\d+") ? (Object) Long.valueOf(number) : Double.valueOf(number);
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return out.toString();
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char e = s.charAt(i++);
                switch (e) {
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'n' -> out.append('\n');
                    case 'r' -> out.append('\r');
                    case 't' -> out.append('\t');
                    case 'u' -> {
                        out.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        i += 4;
                    }
                    default -> out.append(e); // \" \\ \/
                }
            }
        }

        private void expect(char c) {
            if (i >= s.length() || s.charAt(i) != c) {
                throw new IllegalArgumentException("expected '" + c + "' at " + i);
            }
            i++;
        }
    }
}
