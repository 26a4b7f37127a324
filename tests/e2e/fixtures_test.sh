#!/usr/bin/env bash
# Proves the registry test fixtures work with third-party clients: Debian's
# docker-registry (plain, htpasswd, token auth through strata-test-token-server),
# skopeo, umoci and curl, and the faults of strata-test-fault-proxy.
#
#   fixtures_test.sh TOKEN_SERVER_BIN FAULT_PROXY_BIN
#
# jq programs use $variables inside single quotes:
# shellcheck disable=SC2016
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$HERE/lib.sh"
# shellcheck source=tests/e2e/registry_lib.sh
source "$HERE/registry_lib.sh"

(($# == 2)) || { echo "usage: $0 TOKEN_SERVER_BIN FAULT_PROXY_BIN" >&2; exit 2; }
TOKEN_SERVER_BIN=$(realpath "$1")
FAULT_PROXY_BIN=$(realpath "$2")
e2e_init strata-fixtures

REPO=strata/fixture
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

# http_code ARGS...: curl's status code for a request ("000" when none came back).
http_code() { curl -s -o /dev/null -w '%{http_code}' "$@" || true; }

# manifest_digest REGISTRY REF [CURL_ARGS...]: Docker-Content-Digest of a manifest.
manifest_digest() {
  local registry="$1" ref="$2"
  shift 2
  curl -sS -I -H "Accept: $OCI_MANIFEST" "$@" "http://$registry/v2/$REPO/manifests/$ref" |
    tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p'
}

# token_for TOKEN_ADDR USER:PASS|- SCOPE: a bearer token from one of our token servers
# ("-": asked for without credentials).
token_for() {
  local creds=()
  [[ "$2" == - ]] || creds=(-u "$2")
  curl -sS --fail "${creds[@]}" "http://$1/token?service=$TOKEN_SERVICE&scope=$3" | jq -r .token
}

# ---- the test image ----------------------------------------------------------

make_test_image "$E2E_DIR/image"
check "umoci reads the layout make_test_image wrote" umoci stat --image "$E2E_DIR/image:latest"
check_eq "the image has three layers" "$(wc -w <<<"$TEST_IMAGE_LAYER_DIGESTS")" 3
layer1_listing=$(tar -tvzf "$E2E_DIR/image/blobs/sha256/$(cut -d' ' -f1 <<<"$TEST_IMAGE_LAYER_DIGESTS" | cut -d: -f2)")
check "layer 1 holds a hard link entry" grep -q 'data/hardlink-b link to data/hardlink-a' <<<"$layer1_listing"
check "layer 1 holds a fifo entry" grep -q '^p.* data/fifo$' <<<"$layer1_listing"
check "layer 1 holds a setuid entry" grep -q '^-rwsr-xr-x .* data/setuid$' <<<"$layer1_listing"

# ---- plain registry ------------------------------------------------------------

start_registry
PLAIN_ADDR="$REGISTRY_ADDR"
check "skopeo pushes the test image to a plain registry" \
  push_oci_layout "$E2E_DIR/image" "$PLAIN_ADDR/$REPO:v1"
check_eq "the registry serves the manifest digest we built" \
  "$(manifest_digest "$PLAIN_ADDR" v1)" "$TEST_IMAGE_MANIFEST_DIGEST"
check "skopeo pulls it back into an OCI layout" \
  pull_oci_layout "$PLAIN_ADDR/$REPO:v1" "$E2E_DIR/pulled-plain:v1"
check "umoci unpacks the pulled image" \
  umoci unpack --image "$E2E_DIR/pulled-plain:v1" "$E2E_DIR/bundle-plain"
check_test_image_rootfs "$E2E_DIR/bundle-plain/rootfs"
check_eq "delete is enabled: DELETE of the manifest answers 202" \
  "$(http_code -X DELETE "http://$PLAIN_ADDR/v2/$REPO/manifests/$TEST_IMAGE_MANIFEST_DIGEST")" 202
check "the image can be pushed again after the delete" \
  push_oci_layout "$E2E_DIR/image" "$PLAIN_ADDR/$REPO:v1"

# ---- htpasswd registry -----------------------------------------------------------

start_registry --htpasswd alice:secret --htpasswd bob:hunter2
check_eq "htpasswd: anonymous /v2/ answers 401" "$(http_code "http://$REGISTRY_ADDR/v2/")" 401
check_eq "htpasswd: /v2/ with alice's password answers 200" \
  "$(http_code -u alice:secret "http://$REGISTRY_ADDR/v2/")" 200
check_fails "htpasswd: skopeo push with a wrong password is refused" \
  push_oci_layout "$E2E_DIR/image" "$REGISTRY_ADDR/$REPO:v1" alice:wrong
check "htpasswd: skopeo push with the right password succeeds" \
  push_oci_layout "$E2E_DIR/image" "$REGISTRY_ADDR/$REPO:v1" alice:secret
check "htpasswd: skopeo pull as the second user succeeds" \
  pull_oci_layout "$REGISTRY_ADDR/$REPO:v1" "$E2E_DIR/pulled-htpasswd:v1" bob:hunter2

# ---- token registry ------------------------------------------------------------

start_token_server --user alice:secret --user bob:hunter2:pull --expires-in 60
MAIN_TOKEN_ADDR="$TOKEN_ADDR"
MAIN_TOKEN_LOG="$TOKEN_LOG"
start_registry --token
TOKEN_REGISTRY="$REGISTRY_ADDR"
challenge=$(curl -s -D - -o /dev/null "http://$TOKEN_REGISTRY/v2/" | tr -d '\r' | grep -i '^www-authenticate:' || true)
check "token: anonymous /v2/ gets a Bearer challenge naming our realm and service" \
  grep -qF "Bearer realm=\"$TOKEN_REALM\",service=\"$TOKEN_SERVICE\"" <<<"$challenge"
check_fails "token: skopeo push with a wrong password is refused" \
  push_oci_layout "$E2E_DIR/image" "$TOKEN_REGISTRY/$REPO:v1" alice:wrong
check "token: the token server logged the refusal without the password" \
  grep -q 'auth=basic user=alice .*status=401' "$MAIN_TOKEN_LOG"
check_lacks "token: no password in the token server log" "$(cat "$MAIN_TOKEN_LOG")" "wrong"
check "token: skopeo pushes with a token from our server" \
  push_oci_layout "$E2E_DIR/image" "$TOKEN_REGISTRY/$REPO:v1" alice:secret
check "token: the log shows the push scope granted to alice" \
  grep -q "user=alice scope=repository:$REPO:pull,push status=200 granted=repository:$REPO:pull,push" \
  "$MAIN_TOKEN_LOG"
check "token: skopeo pulls with a token" \
  pull_oci_layout "$TOKEN_REGISTRY/$REPO:v1" "$E2E_DIR/pulled-token:v1" alice:secret
check "token: umoci unpacks the image pulled through token auth" \
  umoci unpack --image "$E2E_DIR/pulled-token:v1" "$E2E_DIR/bundle-token"
check_eq "token: the unpacked image has layer 3's file" "$(cat "$E2E_DIR/bundle-token/rootfs/etc/layer3")" \
  "third layer"
check_fails "token: bob (pull only) cannot push" \
  push_oci_layout "$E2E_DIR/image" "$TOKEN_REGISTRY/$REPO:bob" bob:hunter2
check "token: bob was granted pull only" \
  grep -q "user=bob scope=repository:$REPO:pull,push status=200 granted=repository:$REPO:pull\$" \
  "$MAIN_TOKEN_LOG"
check "token: bob can pull" \
  pull_oci_layout "$TOKEN_REGISTRY/$REPO:v1" "$E2E_DIR/pulled-bob:v1" bob:hunter2
anonymous=$(token_for "$MAIN_TOKEN_ADDR" - "repository:$REPO:pull")
check_eq "token: an anonymous token grants nothing (401 insufficient_scope)" \
  "$(curl -s -o /dev/null -D - -H "Authorization: Bearer $anonymous" \
    "http://$TOKEN_REGISTRY/v2/$REPO/tags/list" | tr -d '\r' | grep -ci 'error="insufficient_scope"')" 1

fresh=$(token_for "$MAIN_TOKEN_ADDR" alice:secret "repository:$REPO:pull")
check_eq "token: a fresh token lists the tags" \
  "$(curl -s -H "Authorization: Bearer $fresh" "http://$TOKEN_REGISTRY/v2/$REPO/tags/list" | jq -c .tags)" \
  '["v1"]'
# distribution accepts tokens up to 60 s past "exp"; a server whose clock is an
# hour behind (same key) issues tokens that are long expired.
start_token_server --user alice:secret --expires-in 60 --backdate 3600
stale=$(token_for "$TOKEN_ADDR" alice:secret "repository:$REPO:pull")
stale_answer=$(curl -s -o /dev/null -D - -H "Authorization: Bearer $stale" \
  "http://$TOKEN_REGISTRY/v2/$REPO/tags/list" | tr -d '\r')
check "token: an expired token is refused with 401 invalid_token" \
  grep -q 'error="invalid_token"' <<<"$(grep -i '^www-authenticate' <<<"$stale_answer")"
check "token: the registry logged why" grep -q 'token not to be used after' "$REGISTRY_LOG"

oauth=$(curl -s -d grant_type=password -d username=alice -d password=secret -d client_id=fixtures \
  -d access_type=offline -d "service=$TOKEN_SERVICE" --data-urlencode "scope=repository:$REPO:pull" \
  "http://$MAIN_TOKEN_ADDR/token")
check_eq "oauth: POST /token password grant returns a scope and a refresh token" \
  "$(jq -r '[.scope, (.refresh_token | length > 0), (.access_token | length > 0)] | @tsv' <<<"$oauth")" \
  "repository:$REPO:pull	true	true"
refreshed=$(curl -s -d grant_type=refresh_token -d "refresh_token=$(jq -r .refresh_token <<<"$oauth")" \
  -d "service=$TOKEN_SERVICE" --data-urlencode "scope=repository:$REPO:pull" \
  "http://$MAIN_TOKEN_ADDR/token" | jq -r .access_token)
check_eq "oauth: a token from the refresh grant lists the tags" \
  "$(http_code -H "Authorization: Bearer $refreshed" "http://$TOKEN_REGISTRY/v2/$REPO/tags/list")" 200
check_eq "oauth: a wrong password is invalid_grant (400)" \
  "$(http_code -d grant_type=password -d username=alice -d password=nope "http://$MAIN_TOKEN_ADDR/token")" 400
start_token_server --user alice:secret --no-oauth --anonymous-pull
check_eq "oauth: with --no-oauth POST /token answers 404 (clients fall back to GET)" \
  "$(http_code -d grant_type=password -d username=alice -d password=secret "http://$TOKEN_ADDR/token")" 404
anonymous=$(token_for "$TOKEN_ADDR" - "repository:$REPO:pull,push")
check "token: --anonymous-pull grants an anonymous request pull only" \
  grep -q "auth=none scope=repository:$REPO:pull,push status=200 granted=repository:$REPO:pull\$" "$TOKEN_LOG"
check_eq "token: that anonymous token lists the tags" \
  "$(http_code -H "Authorization: Bearer $anonymous" "http://$TOKEN_REGISTRY/v2/$REPO/tags/list")" 200

# A CA-issued signing certificate: the registry trusts only the CA, and the token
# carries leaf + CA in x5c.
ca_dir="$E2E_DIR/ca"
mkdir -p "$ca_dir"
openssl ecparam -name prime256v1 -genkey -noout -out "$ca_dir/ca-key.pem" 2>/dev/null
openssl req -x509 -new -key "$ca_dir/ca-key.pem" -subj "/CN=strata test CA" -days 3650 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -out "$ca_dir/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$ca_dir/leaf-key.pem" 2>/dev/null
openssl req -new -key "$ca_dir/leaf-key.pem" -subj "/CN=strata test token signer" \
  -out "$ca_dir/leaf.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$ca_dir/leaf.ext"
openssl x509 -req -in "$ca_dir/leaf.csr" -CA "$ca_dir/ca.pem" -CAkey "$ca_dir/ca-key.pem" \
  -CAcreateserial -days 3650 -extfile "$ca_dir/leaf.ext" -out "$ca_dir/leaf.pem" 2>/dev/null
cat "$ca_dir/leaf.pem" "$ca_dir/ca.pem" >"$ca_dir/chain.pem"
start_token_server --key "$ca_dir/leaf-key.pem" --cert "$ca_dir/chain.pem" --user alice:secret
CA_TOKEN_ADDR="$TOKEN_ADDR"
start_registry --token --token-bundle "$ca_dir/ca.pem"
check_eq "ca: a token signed by a CA-issued leaf is accepted" \
  "$(http_code -H "Authorization: Bearer $(token_for "$CA_TOKEN_ADDR" alice:secret "repository:$REPO:pull")" \
    "http://$REGISTRY_ADDR/v2/")" 200
check_eq "ca: a token from the self-signed key (not in this bundle) is refused" \
  "$(http_code -H "Authorization: Bearer $fresh" "http://$REGISTRY_ADDR/v2/")" 401

# ---- fault proxy ---------------------------------------------------------------

start_fault_proxy "$PLAIN_ADDR"
BLOB_REPO=strata/blobs
blob="$E2E_DIR/blob.bin"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$blob"
BLOB_SIZE=$(stat -c %s "$blob")
BLOB_DIGEST="sha256:$(sha256sum "$blob" | cut -d' ' -f1)"

location=$(curl -s -D - -o /dev/null -X POST "http://$PROXY_ADDR/v2/$BLOB_REPO/blobs/uploads/" |
  tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
check "proxy: upload Location is rewritten to point at the proxy" \
  grep -q "^http://$PROXY_ADDR/v2/$BLOB_REPO/blobs/uploads/" <<<"$location"
check_eq "proxy: a 10 MiB monolithic PUT (Expect: 100-continue) goes through" \
  "$(http_code -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$blob" \
    "$location&digest=$BLOB_DIGEST")" 201
check_eq "proxy: the registry has the blob" \
  "$(http_code -I "http://$PLAIN_ADDR/v2/$BLOB_REPO/blobs/$BLOB_DIGEST")" 200

small="$E2E_DIR/small.bin"
head -c 300000 /dev/urandom >"$small"
small_digest="sha256:$(sha256sum "$small" | cut -d' ' -f1)"
location=$(curl -s -D - -o /dev/null -X POST "http://$PROXY_ADDR/v2/$BLOB_REPO/blobs/uploads/" |
  tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
patched=$(curl -s -D - -o /dev/null -X PATCH -H 'Transfer-Encoding: chunked' \
  -H 'Content-Type: application/octet-stream' --data-binary "@$small" "$location" | tr -d '\r')
check "proxy: a chunked PATCH upload is accepted (202)" grep -q '^HTTP/1.1 202' <<<"$patched"
location=$(sed -n 's/^[Ll]ocation: //p' <<<"$patched")
check_eq "proxy: the upload completes with PUT ?digest=" \
  "$(http_code -X PUT "$location&digest=$small_digest")" 201
check_eq "proxy: the chunked upload stored the right bytes" \
  "$(curl -s "http://$PLAIN_ADDR/v2/$BLOB_REPO/blobs/$small_digest" | sha256sum | cut -d' ' -f1)" \
  "${small_digest#sha256:}"

BLOB_URL="http://$PROXY_ADDR/v2/$BLOB_REPO/blobs/$BLOB_DIGEST"
blob_sha() { curl -s "$@" "$BLOB_URL" | sha256sum | cut -d' ' -f1; }

check_eq "proxy: HEAD of the blob passes through" "$(http_code -I "$BLOB_URL")" 200
check_eq "proxy: without faults the blob comes through intact" "$(blob_sha)" "${BLOB_DIGEST#sha256:}"

check "rules: status=500 times=1 is accepted" set_fault_rules "GET /v2/.*/blobs/sha256:.* status=500 times=1"
check_eq "fault status=500: the first GET gets 500" "$(http_code "$BLOB_URL")" 500
check_eq "fault status=500: the second GET succeeds" "$(http_code "$BLOB_URL")" 200

set_fault_rules "HEAD /v2/.*/blobs/.* status=500 skip=1 times=1"
check_eq "fault skip=1 times=1: only the second matching request fails" \
  "$(for _ in 1 2 3; do http_code -I "$BLOB_URL"; echo; done | tr '\n' ' ')" "200 500 200 "
set_fault_rules "HEAD /v2/.*/blobs/.* status=503 prob=0.5"
coin=$(for _ in {1..20}; do http_code -I "$BLOB_URL"; echo; done | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
check "fault prob=0.5: 20 requests see both answers ($coin)" grep -q '200:.*503:' <<<"$coin"

set_fault_rules "GET /v2/.*/blobs/.* status=429 retry-after=2"
throttled=$(curl -s -D - -o /dev/null "$BLOB_URL" | tr -d '\r')
check "fault status=429: answered 429" grep -q '^HTTP/1.1 429' <<<"$throttled"
check "fault status=429: carries Retry-After: 2" grep -qi '^retry-after: 2$' <<<"$throttled"

set_fault_rules "GET /v2/.*/blobs/.* truncate=100000"
rc=0
curl -s -o "$E2E_DIR/truncated" "$BLOB_URL" || rc=$?
check_eq "fault truncate: curl detects the short body (exit 18)" "$rc" 18
check_eq "fault truncate: exactly 100000 bytes arrived" "$(stat -c %s "$E2E_DIR/truncated")" 100000

set_fault_rules
check_eq "range: without faults a Range request gets 206" \
  "$(curl -s -r 0-99 -o "$E2E_DIR/range" -w '%{http_code} %{size_download}' "$BLOB_URL")" "206 100"
set_fault_rules "GET /v2/.*/blobs/.* ignore-range"
check_eq "fault ignore-range: the Range request gets 200 and the whole blob" \
  "$(curl -s -r 0-99 -o "$E2E_DIR/range" -w '%{http_code} %{size_download}' "$BLOB_URL")" "200 $BLOB_SIZE"

set_fault_rules "GET /v2/.*/blobs/.* redirect"
redirect=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$BLOB_URL")
check "fault redirect: 307 to the proxy's backend listener" \
  grep -q "^307 http://$PROXY_BACKEND_ADDR/storage/[0-9a-f]*/$BLOB_DIGEST\$" <<<"$redirect"
check_eq "fault redirect: curl -L fetches the blob intact" "$(blob_sha -L)" "${BLOB_DIGEST#sha256:}"
check_eq "fault redirect: the backend serves Range requests" \
  "$(curl -s -L -r 10-19 -o /dev/null -w '%{http_code} %{size_download}' "$BLOB_URL")" "206 10"

set_fault_rules "GET /v2/.*/blobs/.* corrupt"
corrupted=$(curl -s -o "$E2E_DIR/corrupt" -w '%{size_download}' "$BLOB_URL")
check_eq "fault corrupt: the size is unchanged" "$corrupted" "$BLOB_SIZE"
check_eq "fault corrupt: exactly one byte differs" \
  "$(cmp -l "$blob" "$E2E_DIR/corrupt" | wc -l)" 1

set_fault_rules "GET /v2/.*/blobs/.* reset"
rc=0
curl -s -o /dev/null "$BLOB_URL" || rc=$?
check "fault reset: curl sees the connection reset (exit 56, or 52)" test "$rc" -eq 56 -o "$rc" -eq 52

set_fault_rules "GET /v2/.*/blobs/.* delay=700"
elapsed=$(curl -s -o /dev/null -w '%{time_total}' "$BLOB_URL")
check "fault delay=700: the answer took at least 0.6 s (took $elapsed s)" \
  awk -v t="$elapsed" 'BEGIN { exit !(t >= 0.6) }'

set_fault_rules "GET /v2/.*/blobs/.* stall=800 stall-after=65536"
stalled=$(curl -s -o "$E2E_DIR/stalled" -w '%{time_total}' "$BLOB_URL")
check "fault stall=800: the download paused at least 0.7 s (took $stalled s)" \
  awk -v t="$stalled" 'BEGIN { exit !(t >= 0.7) }'
check_eq "fault stall=800: and then completed intact" \
  "$(sha256sum <"$E2E_DIR/stalled" | cut -d' ' -f1)" "${BLOB_DIGEST#sha256:}"
set_fault_rules "GET /v2/.*/blobs/.* stall=forever"
rc=0
curl -s -o /dev/null --max-time 2 "$BLOB_URL" || rc=$?
check_eq "fault stall=forever: curl gives up on its own deadline (exit 28)" "$rc" 28

RATE=4000000
set_fault_rules "* .* rate=$RATE"
took=$(curl -s -o "$E2E_DIR/rated" -w '%{time_total}' "$BLOB_URL")
measured=$(awk -v s="$BLOB_SIZE" -v t="$took" 'BEGIN { printf "%d", s / t }')
log "rate limit $RATE B/s: $BLOB_SIZE bytes in $took s = $measured B/s"
check "fault rate=$RATE: measured $measured B/s, below twice the limit" test "$measured" -lt $((2 * RATE))
check_eq "fault rate: the throttled blob is intact" \
  "$(sha256sum <"$E2E_DIR/rated" | cut -d' ' -f1)" "${BLOB_DIGEST#sha256:}"

printf 'GET /v2/.*/blobs/.* status=503\n' >"$PROXY_RULES_FILE.tmp"
mv "$PROXY_RULES_FILE.tmp" "$PROXY_RULES_FILE"
check_eq "rules file: a new rules file takes effect" "$(http_code "$BLOB_URL")" 503
printf '# no faults\n' >"$PROXY_RULES_FILE.tmp"
mv "$PROXY_RULES_FILE.tmp" "$PROXY_RULES_FILE"
check_eq "rules file: rewriting it clears the fault" "$(http_code "$BLOB_URL")" 200
check_eq "rules: a malformed rule is refused with 400" \
  "$(http_code -X POST --data-binary 'GET /v2/ explode=1' "http://$PROXY_ADDR/__fault/rules")" 400

set_fault_rules "GET /v2/.*/blobs/.* redirect"
check "proxy: skopeo pushes through the proxy (uploads, keep-alive, Location rewriting)" \
  push_oci_layout "$E2E_DIR/image" "$PROXY_ADDR/strata/via-proxy:v1"
check "proxy: skopeo pulls through the proxy, following blob redirects" \
  pull_oci_layout "$PROXY_ADDR/strata/via-proxy:v1" "$E2E_DIR/pulled-proxy:v1"
check_eq "proxy: the image pulled through the proxy has the pushed manifest" \
  "$(jq -r '.manifests[0].digest' "$E2E_DIR/pulled-proxy/index.json")" \
  "$TEST_IMAGE_MANIFEST_DIGEST"

stats=$(fault_stats)
blob_path="/v2/$BLOB_REPO/blobs/$BLOB_DIGEST"
check "stats: counts the blob requests" \
  jq -e --arg p "$blob_path" '.paths[$p].requests >= 15 and .paths[$p].methods.GET >= 14' <<<"$stats"
check "stats: counts bytes sent (nine whole blob downloads and some pieces)" \
  jq -e --argjson s "$BLOB_SIZE" '.bytes_sent > 9 * $s' <<<"$stats"
check "stats: counts faults by kind" \
  jq -e '.faults.status >= 3 and .faults.truncate == 1 and .faults.redirect >= 2 and .faults.reset == 1' <<<"$stats"
check "stats: shows the redirected requests on the backend listener" \
  jq -e '[.paths | to_entries[] | select(.key | startswith("/storage/"))] | length >= 2' <<<"$stats"
check "stats: lists the active rules with counters" \
  jq -e '.rules[0].rule == "GET /v2/.*/blobs/.* redirect" and .rules[0].applied >= 1' <<<"$stats"
check "proxy log: names each request and its fault" \
  grep -q "front GET $blob_path -> 500 body=.* fault=status=500" "$PROXY_LOG"

e2e_finish
