#!/usr/bin/env bash
# worker/scripts/schemathesis.sh — property-based API test of the local Worker against
# worker/openapi.yaml (the machine-readable copy of the contract, API.md).
#
#   bash worker/scripts/schemathesis.sh            # from anywhere in the repo
#
# 1. Installs schemathesis (pinned) into a venv under <repo>/.tools/venv (gitignored) if missing.
# 2. Starts the local Worker: `bash worker/scripts/start-local.sh <port>` (wrangler dev on
#    127.0.0.1 with the local stand-ins), in its own process group, and polls until it answers.
# 3. Signs in one anonymous user (POST /api/v1/auth/anonymous with X-Client-ID) as a smoke
#    test and hands its access token to schemathesis. Schemathesis sends it as
#    `Authorization: Bearer ...` through an auth provider that switches to a NEW anonymous
#    user every $ST_PER_USER requests, so that the default per-user rate limit (60/min) and
#    free quota (50) do not turn most answers into 429/402 and the successful paths are
#    exercised too (429 and 402 stay documented and are still accepted).
# 4. Runs `schemathesis run` (phases examples, coverage, fuzzing, stateful) with checks
#    not_a_server_error, status_code_conformance, content_type_conformance,
#    response_headers_conformance (RateLimit-*/X-Plan, Retry-After, WWW-Authenticate),
#    response_schema_conformance (JSON bodies and each SSE event of a chat stream),
#    ignored_auth (401 without/with a bad token) and missing_required_header (4xx without
#    X-Client-ID / Idempotency-Key); bounded in examples per operation and in time (the run
#    is killed after $ST_TIMEOUT s; it takes about 20 s). Not checked: negative_data_rejection
#    and positive_data_acceptance, since the Worker may be more lenient (e.g. any visible
#    ASCII Idempotency-Key) or stricter (e.g. max_objects <= 100) than the document where the
#    contract leaves it open.
# 5. Stops the Worker (whole process group) and exits non-zero if anything failed.
#
# Knobs (environment): ST_PORT (18797), ST_MAX_EXAMPLES (40), ST_TIMEOUT (200, seconds for
# the schemathesis run), ST_SEED (20261124; "random" for a fresh seed), ST_PER_USER (20),
# ST_CLIENT_ID (com.tether.schemathesis), ST_WORKERS (1), ST_WORKER_LOG (keep the Worker's log
# there), ST_REPORT_DIR (write schemathesis' JUnit + NDJSON reports there).
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
port="${ST_PORT:-18797}"
base="http://127.0.0.1:${port}"
client_id="${ST_CLIENT_ID:-com.tether.schemathesis}"
max_examples="${ST_MAX_EXAMPLES:-40}"
st_timeout="${ST_TIMEOUT:-200}"
seed="${ST_SEED:-20261124}"
per_user="${ST_PER_USER:-20}"
workers="${ST_WORKERS:-1}"  # 2 threads once tripped a CPython 3.11 AST thread-safety flake
venv="$root/.tools/venv"

say() { printf '[schemathesis.sh] %s\n' "$*" >&2; }

# ---- 1. schemathesis in a venv
if [ ! -x "$venv/bin/schemathesis" ] || [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  say "installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ ! -f "$root/worker/scripts/start-local.sh" ]; then
  say "worker/scripts/start-local.sh is missing: cannot start the local Worker"
  exit 1
fi

if curl -s -o /dev/null --max-time 2 "$base/"; then
  say "something already answers on $base: stop it or set ST_PORT"
  exit 1
fi

work="$(mktemp -d)"
log="$work/worker.log"
worker_pid=""

stop_worker() {
  [ -n "$worker_pid" ] || return 0
  if kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM -- "-$worker_pid" 2>/dev/null || kill -TERM "$worker_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 -- "-$worker_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$worker_pid" 2>/dev/null || true
  fi
  worker_pid=""
}
cleanup() {
  stop_worker
  if [ -n "${ST_WORKER_LOG:-}" ] && [ -f "$log" ]; then cp "$log" "$ST_WORKER_LOG"; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 2. the local Worker, in its own process group (setsid), so one kill stops wrangler and workerd
say "starting the local Worker on 127.0.0.1:$port (log: $log)"
( cd "$root" && exec setsid bash worker/scripts/start-local.sh "$port" ) >"$log" 2>&1 &
worker_pid=$!

ready=""
for _ in $(seq 1 600); do   # up to 300 s: a fresh clone runs npm ci first
  if ! kill -0 "$worker_pid" 2>/dev/null; then
    say "the Worker exited before answering; its log:"
    tail -n 40 "$log" >&2
    exit 1
  fi
  if curl -s -o /dev/null --max-time 2 "$base/api/v1/quota"; then ready=1; break; fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  say "the Worker did not answer on $base within 300 s; its log:"
  tail -n 40 "$log" >&2
  exit 1
fi
say "the Worker answers on $base"

# ---- 3. one anonymous session (smoke test; its token is the first one schemathesis uses)
session="$(curl -sS --max-time 10 -X POST "$base/api/v1/auth/anonymous" \
  -H "Content-Type: application/json" -H "X-Client-ID: $client_id" \
  -H "User-Agent: tether-schemathesis/1 (ci)" -d '{}')"
token="$(printf '%s' "$session" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null || true)"
if [ -z "$token" ]; then
  say "anonymous sign-in did not return an access_token: $session"
  exit 1
fi
say "signed in an anonymous user (token ${#token} chars)"

# The auth provider: the first token, then a fresh anonymous user every $per_user requests.
cat >"$work/tether_st_hooks.py" <<'PY'
import json
import os
import threading
import urllib.request

import schemathesis

_BASE = os.environ["TETHER_ST_BASE"]
_CLIENT_ID = os.environ["TETHER_ST_CLIENT_ID"]
_PER_USER = int(os.environ["TETHER_ST_PER_USER"])
_lock = threading.Lock()
_state = {"token": os.environ["TETHER_ST_TOKEN"], "uses": 0, "users": 1}


def _sign_in() -> str:
    req = urllib.request.Request(
        _BASE + "/api/v1/auth/anonymous",
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Client-ID": _CLIENT_ID,
            "User-Agent": "tether-schemathesis/1 (ci)",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["access_token"]


@schemathesis.auth(refresh_interval=None, retry_on=[])
class RotatingAnonymousUser:
    """Bearer token of an anonymous user; a new user every TETHER_ST_PER_USER requests."""

    def get(self, case, ctx):
        with _lock:
            if _state["uses"] >= _PER_USER:
                try:
                    _state["token"] = _sign_in()
                    _state["users"] += 1
                except Exception:
                    pass  # e.g. sign-ups rate limited: keep the old user (429/402 are documented)
                _state["uses"] = 0
            _state["uses"] += 1
            return _state["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


# A real 16x12 baseline JPEG (648 bytes). Every other generated detect/vision body carries it
# instead of random bytes, so the successful path (200 + DetectResult) is checked too.
_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb0043001b12141714111b1716171e1c1b2028422b28252528513a"
    "3d3042605565645f555d5b6a7899816a7190735b5d85b586909ea3abadab6780bcc9baa6c799a8aba4ffdb0043011c1e"
    "1e2823284e2b2b4ea46e5d6ea4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4"
    "a4a4a4a4a4a4a4a4a4a4a4a4a4a4ffc0001108000c001003012200021101031101ffc4001f0000010501010101010100"
    "000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203000411051221"
    "31410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a"
    "434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a9293949596979899"
    "9aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1"
    "f2f3f4f5f6f7f8f9faffc4001f0100030101010101010101010000000000000102030405060708090a0bffc400b51100"
    "020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f015"
    "6272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869"
    "6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4"
    "c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c03010002110311003f00cf"
    "8ad3daadc569ed57228d7d2adc51afa513acc9c2e219ffd9"
)


@schemathesis.hook
def map_body(ctx, body):
    op = getattr(ctx, "operation", None)
    path = getattr(op, "path", "")
    if path in ("/api/v1/detect", "/api/v1/vision") and isinstance(body, dict) and "image" in body:
        if len(repr(sorted(body.keys()))) % 2 == 0 or len(repr(body.get("image"))) % 2 == 0:
            body = {**body, "image": _JPEG}
    return body
PY

# ---- 4. schemathesis
seed_args=()
[ "$seed" != "random" ] && seed_args=(--seed "$seed")
if [ -n "${ST_REPORT_DIR:-}" ]; then
  mkdir -p "$ST_REPORT_DIR"
  seed_args+=(--report junit,ndjson --report-dir "$(cd "$ST_REPORT_DIR" && pwd)")
fi
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,missing_required_header
say "schemathesis run: checks $checks; max $max_examples examples/operation; ${st_timeout}s budget"
set +e
(
  cd "$work" # hypothesis/schemathesis write nothing into the repo
  TETHER_ST_BASE="$base" TETHER_ST_CLIENT_ID="$client_id" TETHER_ST_TOKEN="$token" \
  TETHER_ST_PER_USER="$per_user" PYTHONPATH="$work" SCHEMATHESIS_HOOKS=tether_st_hooks \
  timeout -k 10 "$st_timeout" "$venv/bin/schemathesis" run "$root/worker/openapi.yaml" \
    --url "$base" \
    -H "X-Client-ID: $client_id" \
    -H "User-Agent: tether-schemathesis/1 (ci)" \
    --checks "$checks" \
    --phases "${ST_PHASES:-examples,coverage,fuzzing,stateful}" \
    --max-examples "$max_examples" \
    --workers "$workers" \
    --request-timeout 30 \
    --generation-database none \
    --suppress-health-check all \
    --no-color \
    "${seed_args[@]}"
)
rc=$?
set -e

stop_worker
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  say "FAILED: schemathesis did not finish within ${st_timeout}s"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  say "FAILED: schemathesis exit code $rc (the Worker's log tail follows)"
  tail -n 20 "$log" >&2 || true
  exit "$rc"
fi
say "OK: no server error and no response that breaks worker/openapi.yaml"
