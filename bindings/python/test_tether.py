"""Scenario test of the generated Python bindings against the real cdylib and a real
server (the `tether serve` contract server) over loopback. Follows tests/scenario.md.

Then checks that a Python process which ends with listeners and a logger still registered
(and calls to them still queued) exits cleanly: `exit_checks` runs this file as a child
with `--exit-child` three times.

Run through bindings/python/run.sh, which generates the bindings and builds the server.
Prints `N passed, M failed` last and exits 1 on any failure.
"""

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tether"))
import tether  # noqa: E402  (the generated module, next to libtether.so)

passed, failed = 0, 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


class DictStore(tether.TokenStore):
    def __init__(self, locked=False):
        self.value, self.locked, self.clears = None, locked, 0

    def load(self):
        if self.locked:
            raise tether.TokenStoreError.Unavailable("keychain locked")
        return self.value

    def save(self, value):
        self.value = value

    def clear(self):
        self.clears += 1
        self.value = None


class Lines(tether.Logger):
    def __init__(self):
        self.lines = []
        self.lock = threading.Lock()

    def log(self, level, target, message):
        with self.lock:
            self.lines.append(f"{level} {target} {message}")


class Events(tether.AuthListener):
    def __init__(self):
        self.events = []

    def on_state_changed(self, state):
        self.events.append(("state", state))

    def on_session_refreshed(self, user_id):
        self.events.append(("refreshed", user_id))


def admin(url, cmd, body=None):
    req = urllib.request.Request(f"{url}/__admin/{cmd}", data=json.dumps(body or {}).encode(), method="POST")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def quota():
    return tether.ApiRequest(method=tether.HttpMethod.GET, path="quota", json_body=None, authenticated=True)


def job():
    body = json.dumps({"kind": "transcribe", "input": {"media": "m"}})
    return tether.ApiRequest(method=tether.HttpMethod.POST, path="jobs", json_body=body, authenticated=True)


def png_chunk(kind, data):
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def png_with_text(w, h):
    """A PNG made by hand: red above blue, with a tEXt chunk naming a place. Returns the file
    and the same file without its text chunk (what a lossless strip must send)."""
    rows = b"".join(b"\0" + (b"\xe0\x10\x10" if y < h // 2 else b"\x10\x10\xe0") * w for y in range(h))
    sig = b"\x89PNG\r\n\x1a\n"
    ihdr = png_chunk(b"IHDR", w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0]))
    text = png_chunk(b"tEXt", b"Location\x0048.8583N 2.2945E")
    rest = png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")
    return sig + ihdr + text + rest, sig + ihdr + rest


class Progress(tether.UploadProgress):
    def __init__(self):
        self.calls = []

    def on_progress(self, attempt, sent, total):
        self.calls.append((attempt, sent, total))


async def wait_until(pred, tries=200):
    for _ in range(tries):
        if pred():
            return True
        await asyncio.sleep(0.01)
    return pred()


async def scenario(url, data_dir):
    # scenario step 18 skipped: Python has no platform package and so no idioms over the
    # listeners (it is a test harness for the core, not a shipped binding).
    # scenario step 1
    try:
        tether.TetherClient(tether.ClientConfig(base_url="http://example.com", client_id="py", data_dir=data_dir), DictStore())
        check("config: plain http to a public host is refused", False)
    except tether.TetherError.Config:
        check("config: plain http to a public host is refused", True)

    store, logs, events = DictStore(), Lines(), Events()
    cfg = tether.ClientConfig(base_url=url, client_id="py-app", data_dir=data_dir)
    client = tether.TetherClient.with_logger(cfg, store, logs)
    # scenario step 2
    sub = client.add_auth_listener(events)
    check("state starts Unknown", client.auth_state().is_unknown(), repr(client.auth_state()))
    state = await client.restore_session()
    check("restore with an empty store -> SignedOut", isinstance(state, tether.AuthState.SIGNED_OUT), repr(state))

    # scenario step 3
    user = await client.sign_in_anonymously()
    check("anonymous sign-in", user.anonymous and user.id.startswith("u_"), repr(user))
    check("the session was saved to the Python token store", store.value is not None and user.id in store.value)
    ok = await wait_until(lambda: any(e[0] == "state" and isinstance(e[1], tether.AuthState.SIGNED_IN) for e in events.events))
    check("the listener saw SignedIn", ok, repr(events.events))

    # scenario step 4
    r = await client.send(quota())
    check("GET quota through the pipeline", r.status == 200 and json.loads(r.body)["plan"] == "free", r.body)
    q = client.quota()
    check("quota() from the headers", q.limit == 50 and q.plan == "free" and q.source == tether.QuotaSource.SERVER, repr(q))

    # scenario step 5
    token = await client.access_token()
    admin(url, "expire-tokens")
    results = await asyncio.gather(*[client.send(quota()) for _ in range(10)])
    check("10 concurrent calls after the token was rejected all succeed", all(x.status == 200 for x in results))
    n = admin(url, "count", {"path": "/api/v1/auth/refresh"})["count"]
    check("...with exactly one refresh", n == 1, f"refreshes={n}")
    ok = await wait_until(lambda: any(e[0] == "refreshed" for e in events.events))
    check("the listener was told of the rotation", ok)

    # scenario step 6
    admin(url, "fault", {"path": "/api/v1/jobs", "status": 503, "retry_after": 0})
    r = await client.send(job())
    check("a 503 is retried transparently", r.status == 202, r.body)

    # scenario step 7
    quota_events = QuotaEvents()
    quota_sub = client.add_quota_listener(quota_events)
    admin(url, "quota-limit", {"limit": 1})
    try:
        await client.send(job())
        check("402 -> PlanRequired", False, "no error")
    except tether.TetherError.PlanRequired as e:
        check("402 -> PlanRequired", e.plan_required == "pro" and e.quota.remaining == 0, repr(e))
    check("quota().paywall is 'pro'", client.quota().paywall == "pro", repr(client.quota()))
    ok = await wait_until(lambda: quota_events.paywalls == ["pro"])
    check("the QuotaListener hears on_paywall('pro') once", ok, repr(quota_events.paywalls))
    sent = admin(url, "count", {"path": "/api/v1/jobs"})["count"]
    try:
        await client.send(job())
        check("fail-fast: PlanRequired with no request sent", False, "no error")
    except tether.TetherError.PlanRequired:
        after = admin(url, "count", {"path": "/api/v1/jobs"})["count"]
        check("fail-fast: PlanRequired with no request sent", after == sent, f"{sent} -> {after}")
    admin(url, "plan", {"plan": "pro", "limit": 5000})
    lifted = await client.refresh_quota()
    check("purchase -> refresh_quota() lifts the paywall",
          lifted.plan == "pro" and lifted.paywall is None and lifted.source == tether.QuotaSource.SERVER, repr(lifted))
    r = await client.send(job())
    check("a job succeeds again", r.status == 202, r.body)
    quota_sub.cancel()

    def restored():
        q = tether.TetherClient(cfg, DictStore()).quota()
        return q.source == tether.QuotaSource.CACHED and q.plan == "pro"
    check("a new client starts from the saved quota state (CACHED, pro)", await wait_until(restored))
    admin(url, "plan", {"plan": "free", "limit": 50})

    # scenario step 8: the server handles the call, then holds its answer until `release`,
    # so the call can only end before that by its cancellation (no clock involved).
    cancel = tether.CancelHandle()
    admin(url, "hold", {"path": "/api/v1/quota"})
    task = asyncio.ensure_future(client.send(quota(), cancel))
    check("the call reached the server, which holds its answer",
          await wait_until(lambda: admin(url, "hold-state", {"path": "/api/v1/quota"})["handled"] is True))
    cancel.cancel()
    try:
        await asyncio.wait_for(task, 30)
        check("CancelHandle cancels a held call", False)
    except tether.TetherError.Cancelled:
        check("CancelHandle cancels a held call", True)
    except asyncio.TimeoutError:
        check("CancelHandle cancels a held call", False, "the call was still waiting for the held answer")
    admin(url, "release", {"path": "/api/v1/quota"})

    await chat_steps(url, client)

    # scenario step 9
    text = "\n".join(logs.lines)
    check("the Python logger received Tether's logs", "tether::" in text and len(logs.lines) > 3)
    check("no token in the logs", token[-16:] not in text)
    check("no token in repr of state or errors", token[-16:] not in repr(client.auth_state()) + repr(events.events))

    # scenario step 10
    await client.sign_out()
    check("sign out", isinstance(client.auth_state(), tether.AuthState.SIGNED_OUT) and store.value is None)
    try:
        await client.send(quota())
        check("a call after sign-out -> SignedOut", False)
    except tether.TetherError.SignedOut:
        check("a call after sign-out -> SignedOut", True)
    sub.cancel()

    # scenario step 11
    locked = DictStore(locked=True)
    c2 = tether.TetherClient(cfg, locked)
    try:
        await c2.restore_session()
        check("a locked keychain -> Storage error", False)
    except tether.TetherError.Storage:
        check("a locked keychain -> Storage error", True)
    check("...and the state stays Unknown (not signed out)", isinstance(c2.auth_state(), tether.AuthState.UNKNOWN) and locked.clears == 0)

    # scenario step 14: image upload, detect with a progress listener, then a 413 and a 402.
    await client.sign_in_anonymously()
    png, stripped = png_with_text(120, 80)
    path = os.path.join(data_dir, "photo.jpg")  # a PNG named .jpg: sniffed from its bytes
    with open(path, "wb") as f:
        f.write(png)
    progress = Progress()
    d = await client.detect(tether.ImageSource.FILE(path=path), progress=progress)
    check("detect finds the server's object", d.objects[0].label == "cat" and d.model == "yolov8n", repr(d))
    i = d.image
    check("ImageInfo: a PNG, 120x80, not resized, metadata stripped",
          i.media_type == "image/png" and (i.width, i.height) == (120, 80) and not i.resized
          and i.metadata_stripped and i.byte_size == len(stripped), repr(i))
    ups = admin(url, "uploads")["uploads"]
    check("the server received the PNG without its text chunk (SHA-256)",
          len(ups) == 1 and ups[0]["sha256"] == hashlib.sha256(stripped).hexdigest()
          and ups[0]["content_type"] == "image/png", repr(ups))
    last = progress.calls[-1] if progress.calls else None
    check("the UploadProgress ends at sent == total on attempt 1",
          last is not None and last[0] == 1 and last[1] == last[2] > len(stripped)
          and all(a[1] <= b[1] for a, b in zip(progress.calls, progress.calls[1:])), repr(progress.calls))
    admin(url, "upload-limit", {"bytes": 100})
    try:
        await client.detect(tether.ImageSource.FILE(path=path))
        check("over the server's limit -> PayloadTooLarge", False, "no error")
    except tether.TetherError.PayloadTooLarge as e:
        check("over the server's limit -> PayloadTooLarge", e.max_bytes == 100, repr(e))
    admin(url, "upload-limit")
    admin(url, "quota-limit", {"limit": 0})
    try:
        await client.detect(tether.ImageSource.BYTES(data=png), progress=Progress())
        check("detect with the quota used up -> PlanRequired", False, "no error")
    except tether.TetherError.PlanRequired as e:
        check("detect with the quota used up -> PlanRequired", e.plan_required == "pro" and e.quota.remaining == 0, repr(e))
    n = len(admin(url, "uploads")["uploads"])
    check("...and nothing was charged", n == 1, f"uploads={n}")
    admin(url, "quota-limit", {"limit": 50})
    q = await client.refresh_quota()
    check("refresh_quota() lifts the paywall", q.paywall is None, repr(q))
    await client.sign_out()


class QuotaEvents(tether.QuotaListener):
    def __init__(self):
        self.states, self.paywalls = [], []

    def on_quota_changed(self, state):
        self.states.append(state)

    def on_paywall(self, plan_required, state):
        self.paywalls.append(plan_required)


class JobStatuses(tether.JobListener):
    def __init__(self):
        self.statuses = []

    def on_status_changed(self, job):
        self.statuses.append(job.status)


async def images_and_jobs(url, data_dir):
    admin(url, "quota-limit", {"limit": 50})
    cfg = tether.ClientConfig(base_url=url, client_id="py-app", data_dir=data_dir)
    client = tether.TetherClient(cfg, DictStore())
    await client.restore_session()
    await client.sign_in_anonymously()

    out = os.path.join(data_dir, "pictures")
    # scenario step 12
    img = await client.generate_image("a lighthouse", tether.ImageOptions(width=300, height=100, path=os.path.join(out, "a.png")))
    with open(img.path, "rb") as f:
        head = f.read(8)
    check("12. generate_image writes a PNG sized by its IHDR", (img.width, img.height) == (300, 256) and head == b"\x89PNG\r\n\x1a\n"
          and os.path.getsize(img.path) == img.byte_size, repr(img))
    admin(url, "image-fault", {"kind": "not-png"})
    try:
        await client.generate_image("broken", tether.ImageOptions(width=256, height=256, path=os.path.join(out, "b.png")))
        check("12. a non-PNG reply -> Decode", False, "no error")
    except tether.TetherError.Decode:
        check("12. a non-PNG reply -> Decode", True)
    check("12. ...and no file left behind", sorted(os.listdir(out)) == ["a.png"], repr(os.listdir(out)))

    # scenario step 13
    job = await client.submit_job("transcribe", json.dumps({"url": "https://example.com/a.mp3", "steps": 3}))
    check("13. submit_job -> Queued", job.status == tether.JobStatus.QUEUED and job.id.startswith("j_"), repr(job))
    heard = JobStatuses()
    done = await client.wait_for_job(job.id, heard)
    check("13. wait_for_job -> Succeeded with a result", done.status == tether.JobStatus.SUCCEEDED and "transcript" in (done.result_json or ""), repr(done))
    check("13. the listener heard Running then Succeeded", heard.statuses == [tether.JobStatus.RUNNING, tether.JobStatus.SUCCEEDED], repr(heard.statuses))
    failing = await client.submit_job("transcribe", json.dumps({"url": "https://example.com/a.mp3", "fail": True}))
    done = await client.wait_for_job(failing.id, JobStatuses())
    check("13. a failed job is a value", done.status == tether.JobStatus.FAILED and done.error is not None and done.error.code == "internal", repr(done))
    try:
        await client.submit_job("summarize", "{}")
        check("13. unknown kind -> InvalidInput", False, "no error")
    except tether.TetherError.InvalidInput as e:
        check("13. unknown kind -> InvalidInput", e.code == "invalid_input", repr(e))
    try:
        await client.job("j_missing")
        check("13. unknown id -> InvalidInput not_found", False, "no error")
    except tether.TetherError.InvalidInput as e:
        check("13. unknown id -> InvalidInput not_found", e.code == "not_found", repr(e))


class Deltas(tether.ChatListener):
    def __init__(self):
        self.deltas, self.completed, self.errors = [], [], []
        self.first = threading.Event()

    def on_delta(self, message_id, text):
        self.deltas.append(text)
        self.first.set()

    def on_complete(self, message):
        self.completed.append(message)

    def on_error(self, message_id, error):
        self.errors.append((message_id, error))


async def chat_steps(url, client):
    """Scenario steps 15-17: a reply streamed through a Python listener into the history and
    paged back, a search, a cancel that keeps the partial reply."""
    admin(url, "quota-limit", {"limit": 1000})
    pieces = [f"piece{i} caf\u00e9 " for i in range(30)]
    admin(url, "chat-script", {"pieces": pieces, "chunk_sizes": [3, 5], "line_end": "crlf", "keep_alive_every": 2})
    # scenario step 15
    conv = await client.create_conversation("scenario", "Be brief.")
    listener = Deltas()
    reply = await client.send_message(conv.id, "hello from python", None, listener)
    check("chat: the reply streamed through the listener is stored whole",
          reply.status == tether.MessageStatus.COMPLETE and reply.content == "".join(pieces)
          and "".join(listener.deltas) == reply.content and len(listener.completed) == 1,
          repr((reply.status, len(listener.deltas))))
    page = await client.list_messages(conv.id, tether.PageAt.NEWEST(), 1)
    older = await client.list_messages(conv.id, tether.PageAt.BEFORE(page.messages[0].id), 10)
    check("chat: paged back newest first, then before it",
          page.messages[0].id == reply.id and page.has_more
          and [m.content for m in older.messages] == ["hello from python"] and not older.has_more,
          repr(older))

    # scenario step 16
    hits = await client.search_messages(tether.SearchQuery(text="piece7"))
    check("search: finds the reply with a highlighted snippet",
          len(hits) == 1 and hits[0].message.id == reply.id and "[piece7]" in hits[0].snippet, repr(hits))
    try:
        for q in ['"quoted', "AND", "*", "(NEAR", "-x"]:
            await client.search_messages(tether.SearchQuery(text=q))
        check("search: operators in the user's text raise no error", True)
    except tether.TetherError as e:
        check("search: operators in the user's text raise no error", False, repr(e))

    admin(url, "chat-script", {"repeat": ["word ", 2000], "delay_ms": 5})
    # scenario step 17
    cancel = tether.CancelHandle()
    slow = Deltas()
    task = asyncio.ensure_future(client.send_message(conv.id, "a long one", None, slow, cancel))
    await asyncio.get_running_loop().run_in_executor(None, slow.first.wait, 30)
    cancel.cancel()
    try:
        await task
        check("chat: a cancel ends the call with Cancelled", False)
    except tether.TetherError.Cancelled:
        check("chat: a cancel ends the call with Cancelled", True)
    page = await client.list_messages(conv.id, tether.PageAt.NEWEST(), 1)
    m = page.messages[0]
    check("chat: the cancelled reply is stored as Cancelled with its partial text",
          m.status == tether.MessageStatus.CANCELLED and 0 < len(m.content) < 2000 * 5
          and ("word " * 2000).startswith(m.content), repr((m.status, len(m.content))))


class SlowEvents(tether.AuthListener):
    """Slow on purpose, so that calls are still in flight when the process exits."""

    def __init__(self):
        self.count = 0

    def on_state_changed(self, state):
        time.sleep(0.02)
        self.count += 1

    def on_session_refreshed(self, user_id):
        self.count += 1


class SlowLines(tether.Logger):
    def __init__(self):
        self.count = 0

    def log(self, level, target, message):
        time.sleep(0.005)
        self.count += 1


def exit_child(url, data_dir):
    """Signs in and out with 8 slow listeners and a slow logger registered, then ends the
    script with all of them still registered and calls still queued. Exits 0 by itself
    unless the library crashes it on the way out (CPython ends a foreign thread that calls
    into it during finalization; that once aborted the process with exit code 134)."""
    cfg = tether.ClientConfig(base_url=url, client_id="py-exit", data_dir=data_dir, log_level=tether.LogLevel.DEBUG)
    logs = SlowLines()
    client = tether.TetherClient.with_logger(cfg, DictStore(), logs)
    listeners = [SlowEvents() for _ in range(8)]
    subs = [client.add_auth_listener(x) for x in listeners]

    async def go():
        await client.restore_session()
        await client.sign_in_anonymously()
        await wait_until(lambda: all(x.count >= 1 for x in listeners) and logs.count > 0, tries=1000)
        await client.sign_out()

    asyncio.run(go())
    print(f"registered listeners={len(subs)} events={min(x.count for x in listeners)} logs={logs.count}", flush=True)


def exit_checks(url):
    for run in range(1, 4):
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--exit-child", url, d],
                               capture_output=True, text=True, timeout=120)
        m = re.search(r"registered listeners=8 events=(\d+) logs=(\d+)", p.stdout)
        check(f"a process exiting with 8 listeners and a logger registered exits 0 (run {run})",
              p.returncode == 0 and m is not None and int(m[1]) >= 1 and int(m[2]) >= 1,
              f"rc={p.returncode} stdout={p.stdout[-300:]!r} stderr={p.stderr[-600:]!r}")


def main():
    if sys.argv[1] == "--exit-child":
        exit_child(sys.argv[2], sys.argv[3])
        return
    server_bin = sys.argv[1]
    server = subprocess.Popen([server_bin, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().strip()
        url = line.split()[-1]
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(scenario(url, d))
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(images_and_jobs(url, d))
        exit_checks(url)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or passed == 0 else 0)


if __name__ == "__main__":
    main()
