/*
 * Tether binding scenario, Kotlin on a plain JVM (run by android/run-jvm-tests.sh).
 *
 * The generated Kotlin bindings (dev.tether) load the real libtether.so through JNA and
 * talk to the contract server `tether serve`, which this program starts itself and
 * scripts through its /__admin endpoints. Every step asserts something that could fail:
 *
 *   1. an http:// URL for a non-loopback host is rejected with TetherException.Config
 *   2. restoreSession() on an empty Kotlin TokenStore -> SignedOut
 *   3. a Kotlin AuthListener first hears the current state (SignedOut)
 *   4. signInAnonymously() saves the session into the Kotlin TokenStore; the listener
 *      hears SignedIn for that user
 *   5. send(GET quota) -> 200 with a JSON body naming the plan; quota() is filled in from
 *      the headers (plan free, source SERVER)
 *   6. all access tokens expired on the server, then 10 concurrent `async { send }` in
 *      runBlocking -> all 200 and exactly one POST /auth/refresh (single-flight); the
 *      listener hears onSessionRefreshed; accessToken() is a new token
 *   7. a second client on the same TokenStore restores the session (next app launch)
 *   8. quota limit 1: one job is accepted, the next is 402 -> TetherException.PlanRequired
 *      with planRequired "pro"; a Kotlin QuotaListener hears onPaywall("pro") once and
 *      quota().paywall is "pro"; the next metered call fails at once without a request
 *      (fail-fast); the plan is raised on the server (a purchase) -> refreshQuota() lifts
 *      the paywall and a job succeeds; a new client on the same data dir starts from the
 *      saved state (source CACHED, plan "pro")
 *   9. a CancelHandle cancels a call whose answer the server holds back ->
 *      TetherException.Cancelled before the answer is released; cancelling the coroutine
 *      (withTimeoutOrNull) around a held call also returns null, and the client still
 *      works afterwards
 *  9b. chat (tests/scenario.md steps 15-17): a reply streamed through a Kotlin ChatListener
 *      into the history and paged back; a search with a highlighted snippet and
 *      operators in the user's text; cancelling the coroutine of a long reply leaves it
 *      stored as Cancelled with its partial text
 *  10. the Kotlin Logger received log lines, none containing the access or refresh token
 *  11. signOut() -> SignedOut, the TokenStore is cleared, the listener hears SignedOut;
 *      a call afterwards -> TetherException.SignedOut
 *  12. a TokenStore whose load() throws -> restoreSession() fails with
 *      TetherException.Storage and authState() stays Unknown
 *  12b. (scenario.md 12) with a new user: generateImage writes a PNG sized by its IHDR
 *      (300x100 asked, 300x256 from the server's clamp); a non-PNG reply -> Decode, no file
 *  12c. (scenario.md 13) submitJob -> Queued; waitForJob with a Kotlin JobListener ->
 *      Succeeded, the listener heard Running then Succeeded; a failing job is a Failed
 *      value; an unknown kind -> InvalidInput(invalid_input); unknown id -> not_found
 *  14. (scenario.md 14) image upload: signed in again, detect() on a PNG this
 *      program wrote by hand (named .jpg, with a tEXt chunk) with a Kotlin UploadProgress
 *      -> the server's "cat", ImageInfo (image/png, not resized, metadata stripped); the
 *      server received exactly the PNG minus its text chunk (SHA-256); the last progress
 *      call is sent == total on attempt 1; upload-limit 100 -> PayloadTooLarge(maxBytes
 *      100); quota-limit 0 -> PlanRequired("pro") and no upload recorded; refreshQuota()
 *      lifts the paywall once the limit is back
 *  18. (scenario.md 18) the Kotlin idioms of src/main/kotlin/dev/tether/Flows.kt, on a new
 *      client: authStateFlow() starts from authState() and follows restore and sign-in,
 *      and (Eagerly) registers one AuthListener released when its scope ends, or
 *      (WhileSubscribed) only while collected; quotaStateFlow() shows the paywall flag
 *      "pro" after a 402 and drops it after refreshQuota(), paywallEvents() emits "pro"
 *      once, and both listeners are released; sendMessageFlow() yields deltas adding up
 *      to the Done reply (Complete), take(2) on a long reply leaves it stored Cancelled
 *      with a prefix of the text and its ChatListener released, a 402 ends the flow with
 *      PlanRequired; detectFlow() yields never-shrinking Progress ending at sent == total,
 *      then Done with the server's "cat"; a 413 ends it with PayloadTooLarge. "Released"
 *      is read from the generated handle maps (listener objects Rust still holds).
 *  13. a JVM that ends with 8 slow listeners and a slow logger still registered (and calls
 *      to them still queued) exits 0, whether main returns or calls exitProcess: this
 *      program run again as a child with `--exit-child return|exit`
 *
 * It is a `main` program (no JUnit/Gradle here). The last line is `N passed, M failed`;
 * the exit code is 1 if anything failed.
 *
 *   java -Djna.library.path=target/debug -cp ... dev.tether.jvmtest.ScenarioTestKt <path to tether binary>
 */
package dev.tether.jvmtest

import dev.tether.ApiRequest
import dev.tether.AuthListener
import dev.tether.AuthState
import dev.tether.CancelHandle
import dev.tether.ChatListener
import dev.tether.Message
import dev.tether.MessageStatus
import dev.tether.PageAt
import dev.tether.SearchQuery
import dev.tether.ClientConfig
import dev.tether.HttpMethod
import dev.tether.ImageOptions
import dev.tether.JobInfo
import dev.tether.JobListener
import dev.tether.JobStatus
import dev.tether.ImageSource
import dev.tether.LogLevel
import dev.tether.Logger
import dev.tether.QuotaListener
import dev.tether.QuotaSource
import dev.tether.QuotaState
import dev.tether.RetryPolicy
import dev.tether.TetherClient
import dev.tether.TetherException
import dev.tether.TokenStore
import dev.tether.TokenStoreException
import dev.tether.UploadProgress
import dev.tether.tetherVersion
import java.io.ByteArrayOutputStream
import java.security.MessageDigest
import java.util.zip.CRC32
import java.util.zip.DeflaterOutputStream
import java.io.BufferedReader
import java.io.InputStreamReader
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.util.Collections
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlin.system.exitProcess
import dev.tether.ChatEvent
import dev.tether.UploadEvent
import dev.tether.authStateFlow
import dev.tether.detectFlow
import dev.tether.paywallEvents
import dev.tether.quotaStateFlow
import dev.tether.sendMessageFlow
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.cancel
import kotlinx.coroutines.flow.SharingStarted
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeoutOrNull

// ---------------------------------------------------------------------------------------
// Tiny test harness

private var passed = 0
private var failed = 0

private fun expect(name: String, ok: Boolean, detail: () -> String = { "" }) {
    if (ok) {
        passed++
        println("ok    $name")
    } else {
        failed++
        println("FAIL  $name ${detail()}")
    }
}

/** Runs a step; an unexpected exception fails it (and the scenario goes on). */
private fun step(name: String, body: suspend CoroutineScope.() -> Unit) {
    try {
        runBlocking(block = body)
    } catch (e: Throwable) {
        failed++
        println("FAIL  $name: unexpected ${e::class.qualifiedName}: ${e.message}")
    }
}

/** The exception `block` throws, or null if it returned. */
private suspend fun thrown(block: suspend () -> Unit): Throwable? =
    try {
        block()
        null
    } catch (e: Throwable) {
        e
    }

/** Polls `cond` for up to `ms` (listener calls arrive on a Tether thread). */
private suspend fun eventually(ms: Long = 5000, cond: () -> Boolean): Boolean {
    val end = System.nanoTime() + ms * 1_000_000
    while (System.nanoTime() < end) {
        if (cond()) return true
        delay(20)
    }
    return cond()
}


// ---------------------------------------------------------------------------------------
// Kotlin implementations of the foreign traits

/** Records every job status a wait reports. */
class RecordingJobListener : JobListener {
    val statuses = CopyOnWriteArrayList<JobStatus>()
    override fun onStatusChanged(job: JobInfo) {
        statuses.add(job.status)
    }
}

/** What an app would back with EncryptedSharedPreferences / the Keystore. */
class MapTokenStore : TokenStore {
    val map = Collections.synchronizedMap(HashMap<String, String>())
    @Volatile var saves = 0

    override fun load(): String? = map["session"]
    override fun save(value: String) {
        saves++
        map["session"] = value
    }
    override fun clear() {
        map.remove("session")
    }
}

/** A store that is never available (a locked keychain, a broken Keystore). */
class FailingTokenStore : TokenStore {
    override fun load(): String? = throw TokenStoreException.Unavailable("keystore locked")
    override fun save(value: String) = throw TokenStoreException.Unavailable("keystore locked")
    override fun clear() = throw TokenStoreException.Unavailable("keystore locked")
}

class RecordingListener : AuthListener {
    val states = CopyOnWriteArrayList<AuthState>()
    val refreshed = CopyOnWriteArrayList<String>()
    override fun onStateChanged(state: AuthState) {
        states.add(state)
    }
    override fun onSessionRefreshed(userId: String) {
        refreshed.add(userId)
    }
}

class RecordingQuotaListener : QuotaListener {
    val states = CopyOnWriteArrayList<QuotaState>()
    val paywalls = CopyOnWriteArrayList<String>()
    override fun onQuotaChanged(state: QuotaState) {
        states.add(state)
    }
    override fun onPaywall(planRequired: String, state: QuotaState) {
        paywalls.add(planRequired)
    }
}

class RecordingLogger : Logger {
    val lines = CopyOnWriteArrayList<String>()
    override fun log(level: LogLevel, target: String, message: String) {
        lines.add("$level $target $message")
    }
}

class RecordingChat : ChatListener {
    val deltas = CopyOnWriteArrayList<String>()
    val completed = CopyOnWriteArrayList<Message>()
    val errors = CopyOnWriteArrayList<TetherException>()
    override fun onDelta(messageId: String, text: String) {
        deltas.add(text)
    }
    override fun onComplete(message: Message) {
        completed.add(message)
    }
    override fun onError(messageId: String, error: TetherException) {
        errors.add(error)
    }
}

/** Slow on purpose, so that calls are still queued when the process ends. */
class SlowListener : AuthListener {
    val count = AtomicInteger()
    override fun onStateChanged(state: AuthState) {
        Thread.sleep(20)
        count.incrementAndGet()
    }
    override fun onSessionRefreshed(userId: String) {
        count.incrementAndGet()
    }
}

class SlowLogger : Logger {
    val count = AtomicInteger()
    override fun log(level: LogLevel, target: String, message: String) {
        Thread.sleep(5)
        count.incrementAndGet()
    }
}


/** Records every upload progress call. */
class RecordingProgress : UploadProgress {
    val calls = CopyOnWriteArrayList<Triple<UInt, UInt, UInt>>()
    override fun onProgress(attempt: UInt, sent: UInt, total: UInt) {
        calls.add(Triple(attempt, sent, total))
    }
}

private fun pngChunk(out: ByteArrayOutputStream, kind: String, data: ByteArray) {
    val head = kind.toByteArray(Charsets.US_ASCII)
    val crc = CRC32().apply { update(head); update(data) }.value
    out.write(java.nio.ByteBuffer.allocate(4).putInt(data.size).array())
    out.write(head)
    out.write(data)
    out.write(java.nio.ByteBuffer.allocate(4).putInt(crc.toInt()).array())
}

/**
 * A PNG made by hand (red above blue) with a tEXt chunk naming a place; returns it and the
 * same file without the text chunk, which is what a lossless strip must send.
 */
private fun pngWithText(w: Int, h: Int): Pair<ByteArray, ByteArray> {
    val rows = ByteArrayOutputStream()
    for (y in 0 until h) {
        rows.write(0)
        val px = if (y < h / 2) byteArrayOf(0xe0.toByte(), 0x10, 0x10) else byteArrayOf(0x10, 0x10, 0xe0.toByte())
        repeat(w) { rows.write(px) }
    }
    val z = ByteArrayOutputStream().also { DeflaterOutputStream(it).use { d -> d.write(rows.toByteArray()) } }
    val ihdr = java.nio.ByteBuffer.allocate(13).putInt(w).putInt(h).put(byteArrayOf(8, 2, 0, 0, 0)).array()
    fun build(withText: Boolean): ByteArray {
        val out = ByteArrayOutputStream()
        out.write(byteArrayOf(0x89.toByte(), 'P'.code.toByte(), 'N'.code.toByte(), 'G'.code.toByte(), 13, 10, 26, 10))
        pngChunk(out, "IHDR", ihdr)
        if (withText) pngChunk(out, "tEXt", "Location\u000048.8583N 2.2945E".toByteArray(Charsets.ISO_8859_1))
        pngChunk(out, "IDAT", z.toByteArray())
        pngChunk(out, "IEND", ByteArray(0))
        return out.toByteArray()
    }
    return build(true) to build(false)
}

private fun sha256Hex(b: ByteArray): String =
    MessageDigest.getInstance("SHA-256").digest(b).joinToString("") { "%02x".format(it) }

// ---------------------------------------------------------------------------------------
// The contract server (`tether serve`) and its admin endpoints

class ContractServer(binary: String) : AutoCloseable {
    private val process: Process = ProcessBuilder(binary, "serve")
        .redirectError(ProcessBuilder.Redirect.INHERIT)
        .start()
    val url: String
    private val http = HttpClient.newHttpClient()

    init {
        val first = BufferedReader(InputStreamReader(process.inputStream)).readLine()
            ?: error("tether serve exited without printing its address")
        url = Regex("""^listening (http://\S+)$""").find(first.trim())?.groupValues?.get(1)
            ?: error("unexpected first line from tether serve: $first")
    }

    fun admin(command: String, json: String = "{}"): String {
        val req = HttpRequest.newBuilder(URI.create("$url/__admin/$command"))
            .header("content-type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build()
        val resp = http.send(req, HttpResponse.BodyHandlers.ofString())
        check(resp.statusCode() == 200) { "admin $command -> ${resp.statusCode()} ${resp.body()}" }
        return resp.body()
    }

    /** Whether the newest admin `hold` on [path] has caught its request. */
    fun holdHandled(path: String): Boolean =
        Regex(""""handled"\s*:\s*true""").containsMatchIn(admin("hold-state", """{"path":"$path"}"""))

    fun count(path: String): Int {
        val body = admin("count", """{"path":"$path"}""")
        return Regex(""""count"\s*:\s*(\d+)""").find(body)?.groupValues?.get(1)?.toInt()
            ?: error("no count in $body")
    }

    override fun close() {
        runCatching { process.outputStream.close() } // stdin closes: the server exits
        if (!process.waitFor(3, TimeUnit.SECONDS)) process.destroyForcibly()
    }
}

// ---------------------------------------------------------------------------------------

private val quotaCall = ApiRequest(method = HttpMethod.GET, path = "quota")
private val jobCall = ApiRequest(
    method = HttpMethod.POST,
    path = "jobs",
    jsonBody = """{"kind":"transcribe","input":{"media":"jvm-test.m4a"}}""",
)

fun main(args: Array<String>) {
    if (args.firstOrNull() == "--exit-child") {
        exitChild(how = args[1], url = args[2], dataDir = args[3])
        return
    }
    val binary = args.firstOrNull() ?: System.getProperty("tether.server") ?: "target/debug/tether"
    val dataDir = Files.createTempDirectory("tether-kt-").toString()
    ContractServer(binary).use { server ->
        scenario(server, dataDir)
        exitChecks(server.url)
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}

/**
 * The child: signs in and out with 8 slow listeners and a slow logger registered, then
 * ends with all of them still registered and calls still queued: `return` lets main
 * return (the JVM then waits for its non-daemon threads), `exit` calls exitProcess(0).
 */
private fun exitChild(how: String, url: String, dataDir: String) {
    val config = ClientConfig(baseUrl = url, clientId = "jvm-exit", dataDir = dataDir, logLevel = LogLevel.DEBUG)
    val logger = SlowLogger()
    val client = TetherClient.withLogger(config, MapTokenStore(), logger)
    val listeners = List(8) { SlowListener() }
    val subscriptions = listeners.map { client.addAuthListener(it) }
    runBlocking {
        client.restoreSession()
        client.signInAnonymously("device-jvm-exit", null)
        eventually(10_000) { listeners.all { it.count.get() >= 1 } && logger.count.get() > 0 }
        client.signOut()
    }
    val events = listeners.minOf { it.count.get() }
    println("registered listeners=${subscriptions.size} events=$events logs=${logger.count.get()}")
    System.out.flush()
    if (how == "exit") exitProcess(0)
}

private fun exitChecks(url: String) {
    val java = ProcessHandle.current().info().command().orElse("java")
    for (how in listOf("return", "exit", "return")) {
        val dir = Files.createTempDirectory("tether-kt-exit-").toString()
        val child = ProcessBuilder(
            java,
            "-Djna.library.path=${System.getProperty("jna.library.path")}",
            "-cp", System.getProperty("java.class.path"),
            "dev.tether.jvmtest.ScenarioTestKt", "--exit-child", how, url, dir,
        ).redirectErrorStream(true).start()
        var out = ""
        val reader = Thread { out = child.inputStream.bufferedReader().readText() }.apply { start() }
        val finished = child.waitFor(120, TimeUnit.SECONDS)
        if (!finished) child.destroyForcibly()
        reader.join(10_000)
        val m = Regex("""registered listeners=8 events=(\d+) logs=(\d+)""").find(out)
        val code = if (finished) child.exitValue() else null
        expect(
            "a JVM ending ($how) with 8 listeners and a logger registered exits 0",
            code == 0 && m != null && m.groupValues[1].toInt() >= 1 && m.groupValues[2].toInt() >= 1,
        ) { "finished=$finished exit=$code output=${out.takeLast(800)}" }
    }
}

private fun scenario(server: ContractServer, dataDir: String) {
    // Short backoff so the scenario does not wait on retries it does not test.
    val config = ClientConfig(
        baseUrl = server.url,
        clientId = "jvm-scenario",
        dataDir = dataDir,
        retry = RetryPolicy(maxAttempts = 3u, baseDelayMs = 50u, maxDelayMs = 200u, maxRetryAfterS = 2u),
        userAgentSuffix = "ScenarioTest/1.0",
    )

    step("library version") {
        expect("tetherVersion() is a version", tetherVersion().matches(Regex("""\d+\.\d+\.\d+.*"""))) { tetherVersion() }
    }

    // scenario step 1
    step("config validation") {
        val e = thrown { TetherClient(config.copy(baseUrl = "http://example.com"), MapTokenStore()).close() }
        expect("http:// for a non-loopback host -> TetherException.Config", e is TetherException.Config) { "got $e" }
        val e2 = thrown { TetherClient(config.copy(clientId = " "), MapTokenStore()).close() }
        expect("blank clientId -> TetherException.Config", e2 is TetherException.Config) { "got $e2" }
    }

    val store = MapTokenStore()
    val logger = RecordingLogger()
    val listener = RecordingListener()
    val client = TetherClient.withLogger(config, store, logger)
    val subscription = client.addAuthListener(listener)
    var userId = ""

    // scenario step 2
    step("restore on first launch") {
        expect("authState() before restore is Unknown", client.authState() == AuthState.Unknown) { "${client.authState()}" }
        val s = client.restoreSession()
        expect("restoreSession() with an empty store -> SignedOut", s == AuthState.SignedOut) { "got $s" }
        expect("listener hears SignedOut", eventually { listener.states.lastOrNull() == AuthState.SignedOut }) { "${listener.states}" }
    }

    // scenario step 3
    step("anonymous sign-in") {
        val user = client.signInAnonymously("device-jvm-1", null)
        userId = user.id
        expect("signInAnonymously() -> an anonymous user", user.anonymous && user.id.isNotEmpty()) { "$user" }
        val saved = store.map["session"]
        expect(
            "the Kotlin TokenStore received the session",
            store.saves == 1 && saved != null && saved.contains(user.id) && saved.contains("refresh_token"),
        ) { "saves=${store.saves} value=${saved?.take(40)}" }
        expect(
            "authState() is SignedIn",
            client.authState() == AuthState.SignedIn(user.id, true),
        ) { "${client.authState()}" }
        expect(
            "listener hears SignedIn",
            eventually { listener.states.lastOrNull() == AuthState.SignedIn(user.id, true) },
        ) { "${listener.states}" }
    }

    // scenario step 4
    step("send GET quota") {
        val r = client.send(quotaCall, null)
        expect("GET quota -> 200 JSON with \"plan\"", r.status.toInt() == 200 && Regex(""""plan"\s*:""").containsMatchIn(r.body)) { "$r" }
        expect("response carries the request id", r.requestId?.startsWith("req-") == true) { "${r.requestId}" }
        val q = client.quota()
        expect(
            "quota() filled in from the headers",
            q.plan == "free" && (q.limit ?: 0u) > 0u && q.source == QuotaSource.SERVER,
        ) { "$q" }
    }

    // scenario step 5
    step("expired tokens + 10 concurrent calls -> one refresh") {
        val oldToken = client.accessToken(null)
        server.admin("expire-tokens")
        val before = server.count("/api/v1/auth/refresh")
        val results = (1..10).map { async { client.send(quotaCall, null) } }.awaitAll()
        val refreshes = server.count("/api/v1/auth/refresh") - before
        expect("all 10 concurrent calls -> 200", results.size == 10 && results.all { it.status.toInt() == 200 }) {
            results.map { it.status }.toString()
        }
        expect("exactly 1 refresh for 10 callers", refreshes == 1) { "refreshes=$refreshes" }
        expect("listener told of the refresh", eventually { listener.refreshed.contains(userId) }) { "${listener.refreshed}" }
        val newToken = client.accessToken(null)
        expect("accessToken() is the rotated token", newToken != oldToken && newToken.isNotEmpty())
        // Saves: the sign-in, the refresh's recovery record, the rotated session.
        expect("the rotated session was saved", store.saves == 3 && store.map["session"]?.contains(newToken) == true) {
            "saves=${store.saves}"
        }
    }

    step("next launch restores the session") {
        TetherClient(config.copy(dataDir = "$dataDir/next-launch"), store).use { second ->
            val s = second.restoreSession()
            expect("a second client on the same store -> SignedIn", s == AuthState.SignedIn(userId, true)) { "got $s" }
        }
    }

    // scenario step 6
    step("a 503 with Retry-After: 0 is retried transparently") {
        // A GET (not metered: a job here would use up the quota step 7 counts on).
        server.admin("fault", """{"path":"/api/v1/quota","status":503,"retry_after":0}""")
        val before = server.count("/api/v1/quota")
        val r = client.send(quotaCall, null)
        val sent = server.count("/api/v1/quota") - before
        expect("a 503 then 200: the caller sees the 200, after 2 requests", r.status.toInt() == 200 && sent == 2) { "$r, $sent requests" }
    }

    // scenario step 7
    step("quota used up -> PlanRequired") {
        val quotaListener = RecordingQuotaListener()
        val quotaSubscription = client.addQuotaListener(quotaListener)
        server.admin("quota-limit", """{"limit":1}""")
        val ok = client.send(jobCall, null)
        expect("first job within the limit -> 202", ok.status.toInt() == 202 && ok.body.contains("job_id")) { "$ok" }
        val e = thrown { client.send(jobCall, null) }
        expect(
            "second job -> TetherException.PlanRequired(planRequired = \"pro\")",
            e is TetherException.PlanRequired && e.planRequired == "pro",
        ) { "got $e" }
        if (e is TetherException.PlanRequired) {
            expect("PlanRequired carries the quota (0 remaining)", e.quota?.remaining == 0u) { "${e.quota}" }
        }
        expect("quota().paywall is \"pro\"", client.quota().paywall == "pro") { "${client.quota()}" }
        expect("the QuotaListener hears onPaywall(\"pro\")", eventually { quotaListener.paywalls.toList() == listOf("pro") }) {
            "${quotaListener.paywalls}"
        }
        val sent = server.count("/api/v1/jobs")
        val e2 = thrown { client.send(jobCall, null) }
        expect(
            "fail-fast: PlanRequired with no request sent",
            e2 is TetherException.PlanRequired && server.count("/api/v1/jobs") == sent,
        ) { "got $e2" }
        server.admin("plan", """{"plan":"pro","limit":5000}""")
        val lifted = client.refreshQuota(null)
        expect(
            "purchase -> refreshQuota() lifts the paywall",
            lifted.plan == "pro" && lifted.paywall == null && lifted.source == QuotaSource.SERVER,
        ) { "$lifted" }
        expect("a job succeeds again", client.send(jobCall, null).status.toInt() == 202)
        expect("the listener ends on the lifted state", eventually { quotaListener.states.lastOrNull()?.paywall == null && quotaListener.states.lastOrNull()?.plan == "pro" }) {
            "${quotaListener.states.lastOrNull()}"
        }
        quotaSubscription.close()
        val restored = eventually {
            TetherClient(config, MapTokenStore()).use { it.quota().let { q -> q.source == QuotaSource.CACHED && q.plan == "pro" } }
        }
        expect("a new client starts from the saved quota state (CACHED, pro)", restored)
        server.admin("plan", """{"plan":"free","limit":50}""")
    }

    // scenario step 8 (and, below, coroutine cancellation)
    step("CancelHandle cancels a held call") {
        // The server handles the request, then holds its response until `release`: the call
        // can only end before that by its cancellation (no clock involved).
        server.admin("hold", """{"path":"/api/v1/quota"}""")
        val handle = CancelHandle()
        val call = async { thrown { client.send(quotaCall, handle) } }
        expect("the call reached the server, which holds its answer", eventually { server.holdHandled("/api/v1/quota") })
        handle.cancel()
        val e = call.await()
        expect("cancelled call -> TetherException.Cancelled, while the server still held the answer", e is TetherException.Cancelled) { "got $e" }
        server.admin("release", """{"path":"/api/v1/quota"}""")
        expect("handle.isCancelled()", handle.isCancelled())
        val e2 = thrown { client.send(quotaCall, handle) }
        expect("an already-cancelled handle cancels the next call too", e2 is TetherException.Cancelled) { "got $e2" }
        handle.close()
    }

    step("coroutine cancellation reaches the call") {
        server.admin("hold", """{"path":"/api/v1/quota"}""")
        val r = withTimeoutOrNull(1000) { client.send(quotaCall, null) }
        // withTimeoutOrNull would have waited for a call that ignored cancellation, and that
        // call could only end after `release` below.
        expect("withTimeoutOrNull(1000) around a call the server holds -> null", r == null) { "r=$r" }
        server.admin("release", """{"path":"/api/v1/quota"}""")
        val after = client.send(quotaCall, null)
        expect("the client still works afterwards", after.status.toInt() == 200) { "$after" }
    }

    // scenario step 15 (and 16, 17 inside)
    step("chat: a reply streamed into the history, searched, and cancelled") {
        val pieces = (0 until 30).map { "piece$it caf\u00e9 " }
        val json = pieces.joinToString(",") { "\"$it\"" }
        server.admin("chat-script", """{"pieces":[$json],"chunk_sizes":[3,5],"line_end":"crlf","keep_alive_every":2}""")
        val conv = client.createConversation("scenario", "Be brief.")
        val chat = RecordingChat()
        val reply = client.sendMessage(conv.id, "hello from kotlin", null, chat, null)
        expect(
            "the reply streamed through the Kotlin listener is stored whole",
            reply.status == MessageStatus.COMPLETE && reply.content == pieces.joinToString("") &&
                chat.deltas.joinToString("") == reply.content && chat.completed.size == 1,
        ) { "${reply.status} ${chat.deltas.size}" }
        val page = client.listMessages(conv.id, PageAt.Newest, 1u)
        val older = client.listMessages(conv.id, PageAt.Before(page.messages[0].id), 10u)
        expect(
            "paged back: newest, then before it",
            page.messages[0].id == reply.id && page.hasMore &&
                older.messages.map { it.content } == listOf("hello from kotlin") && !older.hasMore,
        ) { "$older" }

        // scenario step 16
        val hits = client.searchMessages(SearchQuery(text = "piece7"), null)
        expect(
            "search finds the reply with a highlighted snippet",
            hits.size == 1 && hits[0].message.id == reply.id && hits[0].snippet.contains("[piece7]"),
        ) { "$hits" }
        val bad = thrown { listOf("\"quoted", "AND", "*", "(NEAR", "-x").forEach { client.searchMessages(SearchQuery(text = it), null) } }
        expect("operators in the user's text raise no error", bad == null) { "got $bad" }

        // scenario step 17
        server.admin("chat-script", """{"repeat":["word ",2000],"delay_ms":5}""")
        val slow = RecordingChat()
        val job = launch { client.sendMessage(conv.id, "a long one", null, slow, null) }
        expect("the long reply starts streaming", eventually(10_000) { slow.deltas.isNotEmpty() })
        job.cancel()
        job.join()
        var last: Message? = null
        val stored = eventually(10_000) {
            last = runBlocking { client.listMessages(conv.id, PageAt.Newest, 1u) }.messages[0]
            last?.status == MessageStatus.CANCELLED
        }
        val text = last?.content ?: ""
        expect(
            "cancelling the coroutine stores the reply as Cancelled with its partial text",
            stored && text.isNotEmpty() && text.length < 2000 * 5 && "word ".repeat(2000).startsWith(text),
        ) { "${last?.status} ${text.length}" }
    }

    // scenario step 9
    step("logs never contain tokens") {
        val access = client.accessToken(null)
        val refresh = Regex(""""refresh_token"\s*:\s*"([^"]+)"""").find(store.map["session"] ?: "")?.groupValues?.get(1)
        expect("the Kotlin Logger received log lines", logger.lines.size >= 3) { "${logger.lines.size} lines" }
        expect("a log line mentions the sign-in", logger.lines.any { it.contains("signed in") }) { logger.lines.take(5).toString() }
        expect("no log line contains the access token", access.length > 20 && logger.lines.none { it.contains(access) })
        expect(
            "no log line contains the refresh token",
            refresh != null && refresh.length > 8 && logger.lines.none { it.contains(refresh) },
        ) { "refresh token found in the store: ${refresh != null}" }
    }

    // scenario step 10
    step("sign out") {
        client.signOut()
        expect("authState() after signOut -> SignedOut", client.authState() == AuthState.SignedOut) { "${client.authState()}" }
        expect("the TokenStore was cleared", store.map["session"] == null)
        expect("listener hears SignedOut", eventually { listener.states.lastOrNull() == AuthState.SignedOut }) { "${listener.states}" }
        val e = thrown { client.send(quotaCall, null) }
        expect("a call after sign-out -> TetherException.SignedOut", e is TetherException.SignedOut) { "got $e" }
        val e2 = thrown { client.accessToken(null) }
        expect("accessToken() after sign-out -> TetherException.SignedOut", e2 is TetherException.SignedOut) { "got $e2" }
    }

    // scenario step 11
    step("a failing TokenStore") {
        TetherClient(config, FailingTokenStore()).use { broken ->
            val e = thrown { broken.restoreSession() }
            expect(
                "restoreSession() -> TetherException.Storage",
                e is TetherException.Storage && e.message?.contains("keystore locked") == true,
            ) { "got $e" }
            expect("authState() stays Unknown", broken.authState() == AuthState.Unknown) { "${broken.authState()}" }
        }
    }

    val media = MapTokenStore()
    val mediaClient = TetherClient(config.copy(dataDir = "$dataDir/media"), media)
    // scenario step 12
    step("images (scenario 12)") {
        server.admin("quota-limit", """{"limit":50}""")
        mediaClient.restoreSession()
        mediaClient.signInAnonymously(null, null)
        val out = "$dataDir/pictures"
        val img = mediaClient.generateImage("a lighthouse", ImageOptions(300u, 100u, "$out/a.png"), null)
        val head = java.io.File(img.path).readBytes().take(8)
        val signature = listOf(0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A).map { it.toByte() }
        expect(
            "generateImage writes a PNG sized by its IHDR (300x256)",
            img.width == 300u && img.height == 256u && head == signature && java.io.File(img.path).length() == img.byteSize.toLong(),
        ) { "$img" }
        server.admin("image-fault", """{"kind":"not-png"}""")
        val e = thrown { mediaClient.generateImage("broken", ImageOptions(256u, 256u, "$out/b.png"), null) }
        expect("a non-PNG reply -> TetherException.Decode", e is TetherException.Decode) { "got $e" }
        val left = java.io.File(out).list()?.sorted()
        expect("...and no file left behind", left == listOf("a.png")) { "$left" }
    }

    // scenario step 13
    step("jobs (scenario 13)") {
        val job = mediaClient.submitJob("transcribe", """{"url":"https://example.com/a.mp3","steps":3}""", null)
        expect("submitJob -> Queued with an id", job.status == JobStatus.QUEUED && job.id.startsWith("j_")) { "$job" }
        val heard = RecordingJobListener()
        val done = mediaClient.waitForJob(job.id, heard, null)
        expect(
            "waitForJob -> Succeeded with a result",
            done.status == JobStatus.SUCCEEDED && done.resultJson?.contains("transcript") == true,
        ) { "$done" }
        expect("the listener heard Running then Succeeded", heard.statuses == listOf(JobStatus.RUNNING, JobStatus.SUCCEEDED)) {
            "${heard.statuses}"
        }
        val failing = mediaClient.submitJob("transcribe", """{"url":"https://example.com/a.mp3","fail":true}""", null)
        val failedJob = mediaClient.waitForJob(failing.id, RecordingJobListener(), null)
        expect("a failed job is a value", failedJob.status == JobStatus.FAILED && failedJob.error?.code == "internal") { "$failedJob" }
        val e = thrown { mediaClient.submitJob("summarize", "{}", null) }
        expect("unknown kind -> InvalidInput(invalid_input)", e is TetherException.InvalidInput && e.code == "invalid_input") { "got $e" }
        val e2 = thrown { mediaClient.job("j_missing", null) }
        expect("unknown id -> InvalidInput(not_found)", e2 is TetherException.InvalidInput && e2.code == "not_found") { "got $e2" }
    }
    mediaClient.close()


    // scenario step 14
    step("image upload: detect with progress, 413, 402") {
        client.signInAnonymously("device-jvm-upload", null)
        val (png, stripped) = pngWithText(120, 80)
        val file = java.io.File(dataDir, "photo.jpg") // a PNG named .jpg: sniffed from its bytes
        file.writeBytes(png)
        val progress = RecordingProgress()
        val d = client.detect(ImageSource.File(file.path), null, progress, null)
        expect("detect finds the server's object", d.objects.firstOrNull()?.label == "cat" && d.model == "yolov8n") { "$d" }
        val i = d.image
        expect(
            "ImageInfo: a PNG, 120x80, not resized, metadata stripped",
            i.mediaType == "image/png" && i.width == 120u && i.height == 80u && !i.resized &&
                i.metadataStripped && i.byteSize.toInt() == stripped.size,
        ) { "$i" }
        val ups = server.admin("uploads")
        expect(
            "the server received the PNG without its text chunk (SHA-256)",
            Regex(""""sha256"""").findAll(ups).count() == 1 && ups.contains(sha256Hex(stripped)) && ups.contains("image/png"),
        ) { ups }
        val last = progress.calls.lastOrNull()
        expect(
            "the UploadProgress ends at sent == total on attempt 1",
            last != null && last.first == 1u && last.second == last.third && last.third.toInt() > stripped.size &&
                progress.calls.zipWithNext().all { (a, b) -> a.second <= b.second },
        ) { "${progress.calls}" }
        server.admin("upload-limit", """{"bytes":100}""")
        val e = thrown { client.detect(ImageSource.File(file.path), null, null, null) }
        expect(
            "over the server's limit -> PayloadTooLarge(maxBytes = 100)",
            e is TetherException.PayloadTooLarge && e.maxBytes == 100u,
        ) { "got $e" }
        server.admin("upload-limit")
        server.admin("quota-limit", """{"limit":0}""")
        val e2 = thrown { client.detect(ImageSource.Bytes(png), null, RecordingProgress(), null) }
        expect(
            "detect with the quota used up -> PlanRequired(\"pro\", 0 remaining)",
            e2 is TetherException.PlanRequired && e2.planRequired == "pro" && e2.quota?.remaining == 0u,
        ) { "got $e2" }
        val after = server.admin("uploads")
        expect("...and nothing was charged", Regex(""""sha256"""").findAll(after).count() == 1) { after }
        server.admin("quota-limit", """{"limit":50}""")
        val q = client.refreshQuota(null)
        expect("refreshQuota() lifts the paywall", q.paywall == null) { "$q" }
        client.signOut()
    }

    idioms(server, config.copy(dataDir = "$dataDir/idioms"))

    subscription.close()
    client.close()
}

/**
 * Listener objects Rust still holds (the generated handle maps; `internal`, visible here
 * because this test is compiled in the same module as the bindings): how the test sees
 * that a flow's subscription was closed and its listener released.
 */
private fun heldAuthListeners() = dev.tether.FfiConverterTypeAuthListener.handleMap.size
private fun heldQuotaListeners() = dev.tether.FfiConverterTypeQuotaListener.handleMap.size
private fun heldChatListeners() = dev.tether.FfiConverterTypeChatListener.handleMap.size

/** scenario step 18: the Kotlin idioms in android/src/main/kotlin/dev/tether/Flows.kt. */
private fun idioms(server: ContractServer, config: ClientConfig) {
    val client = TetherClient(config, MapTokenStore())

    step("idioms: StateFlow of the auth state") {
        val scope = CoroutineScope(Dispatchers.Default)
        val held = heldAuthListeners()
        val auth = client.authStateFlow(scope, SharingStarted.Eagerly)
        expect("its first value is authState() (Unknown before restore)", auth.value == AuthState.Unknown) { "${auth.value}" }
        expect("collecting registers one AuthListener", eventually { heldAuthListeners() == held + 1 }) { "${heldAuthListeners()} vs $held" }
        client.restoreSession()
        expect("restoreSession() -> the StateFlow turns SignedOut", eventually { auth.value == AuthState.SignedOut }) { "${auth.value}" }
        val user = client.signInAnonymously("device-jvm-idioms", null)
        expect(
            "sign-in -> the StateFlow turns SignedIn for that user",
            eventually { auth.value == AuthState.SignedIn(user.id, true) },
        ) { "${auth.value}" }
        scope.cancel()
        expect(
            "the scope ends -> the subscription is closed and the listener released",
            eventually { heldAuthListeners() == held },
        ) { "${heldAuthListeners()} vs $held" }
        // A WhileSubscribed StateFlow (the default) listens only while it is collected.
        val scope2 = CoroutineScope(Dispatchers.Default)
        val lazy = client.authStateFlow(scope2)
        expect("WhileSubscribed: nothing registered before a collector", heldAuthListeners() == held)
        val seen = CopyOnWriteArrayList<AuthState>()
        val collector = launch(Dispatchers.Default) { lazy.collect { seen.add(it) } }
        expect("a collector registers it", eventually { heldAuthListeners() == held + 1 }) { "${heldAuthListeners()} vs $held" }
        expect("...and sees SignedIn", eventually { seen.lastOrNull() == AuthState.SignedIn(user.id, true) }) { "$seen" }
        collector.cancel()
        expect("the collector gone -> released", eventually { heldAuthListeners() == held }) { "${heldAuthListeners()} vs $held" }
        scope2.cancel()
    }

    step("idioms: StateFlow of the quota, the paywall events") {
        val scope = CoroutineScope(Dispatchers.Default)
        val held = heldQuotaListeners()
        server.admin("quota-limit", """{"limit":1}""")
        client.refreshQuota(null)
        val quota = client.quotaStateFlow(scope, SharingStarted.Eagerly)
        expect("its first value is quota()", quota.value == client.quota()) { "${quota.value}" }
        val paywalls = CopyOnWriteArrayList<String>()
        val events = scope.launch { client.paywallEvents().collect { paywalls.add(it) } }
        expect("two QuotaListeners registered", eventually { heldQuotaListeners() == held + 2 }) { "${heldQuotaListeners()} vs $held" }
        expect("a job within the limit", client.send(jobCall, null).status.toInt() == 202)
        val e = thrown { client.send(jobCall, null) }
        expect("the next -> PlanRequired", e is TetherException.PlanRequired) { "got $e" }
        expect("the StateFlow's paywall flag is \"pro\"", eventually { quota.value.paywall == "pro" }) { "${quota.value}" }
        expect("paywallEvents() emitted \"pro\" once", eventually { paywalls.toList() == listOf("pro") }) { "$paywalls" }
        server.admin("quota-limit", """{"limit":50}""")
        client.refreshQuota(null)
        expect("refreshQuota() -> the flag goes down", eventually { quota.value.paywall == null && quota.value.remaining != 0u }) { "${quota.value}" }
        events.cancel()
        expect("a cancelled collector's listener is released", eventually { heldQuotaListeners() == held + 1 }) { "${heldQuotaListeners()} vs $held" }
        scope.cancel()
        expect("the scope ends -> all released", eventually { heldQuotaListeners() == held }) { "${heldQuotaListeners()} vs $held" }
    }

    step("idioms: a chat reply as a Flow, cancelled by its collector") {
        val held = heldChatListeners()
        val pieces = (0 until 40).map { "flow$it " }
        val json = pieces.joinToString(",") { "\"$it\"" }
        server.admin("chat-script", """{"pieces":[$json],"chunk_sizes":[7],"delay_ms":2}""")
        val conv = client.createConversation("flows", null)
        val events = client.sendMessageFlow(conv.id, "hello flow").toList()
        val done = events.last()
        val deltas = events.dropLast(1)
        expect(
            "Delta events, then one Done with the stored Complete reply",
            done is ChatEvent.Done && done.message.status == MessageStatus.COMPLETE &&
                done.message.content == pieces.joinToString("") && deltas.isNotEmpty() && deltas.all { it is ChatEvent.Delta },
        ) { events.map { it::class.simpleName }.toString() }
        expect(
            "the deltas add up to the reply",
            deltas.joinToString("") { (it as ChatEvent.Delta).text } == pieces.joinToString("") &&
                deltas.all { (it as ChatEvent.Delta).messageId == (done as ChatEvent.Done).message.id },
        )

        server.admin("chat-script", """{"repeat":["word ",2000],"delay_ms":5}""")
        val first = client.sendMessageFlow(conv.id, "a long one").take(2).toList()
        expect("take(2) of a long reply: two deltas", first.size == 2 && first.all { it is ChatEvent.Delta }) { "$first" }
        var last: Message? = null
        val stored = eventually(10_000) {
            last = runBlocking { client.listMessages(conv.id, PageAt.Newest, 1u) }.messages[0]
            last?.status == MessageStatus.CANCELLED
        }
        val text = last?.content ?: ""
        expect(
            "the collector gone -> the reply is stored Cancelled with its partial text",
            stored && text.isNotEmpty() && text.length < 2000 * 5 && "word ".repeat(2000).startsWith(text),
        ) { "${last?.status} ${text.length}" }
        expect("...and its ChatListener released", eventually { heldChatListeners() == held }) { "${heldChatListeners()} vs $held" }

        server.admin("quota-limit", """{"limit":0}""")
        val e = thrown { client.sendMessageFlow(conv.id, "over the limit").toList() }
        expect("a refused message ends the flow with PlanRequired", e is TetherException.PlanRequired) { "got $e" }
        server.admin("quota-limit", """{"limit":50}""")
        client.refreshQuota(null)
    }

    step("idioms: upload progress as a Flow") {
        val (png, stripped) = pngWithText(64, 48)
        val file = java.io.File(config.dataDir, "flow.png").apply { writeBytes(png) }
        val events = client.detectFlow(ImageSource.File(file.path)).toList()
        val done = events.last()
        val progress = events.dropLast(1).map { it as? UploadEvent.Progress }
        expect(
            "Progress events, then Done with the detection",
            done is UploadEvent.Done && done.result.objects.firstOrNull()?.label == "cat" &&
                done.result.image.byteSize.toInt() == stripped.size && progress.isNotEmpty() && progress.all { it != null },
        ) { events.toString() }
        val p = progress.filterNotNull()
        expect(
            "progress never shrinks and ends at sent == total on attempt 1",
            p.zipWithNext().all { (a, b) -> a.sent <= b.sent } && p.last().attempt == 1u && p.last().sent == p.last().total,
        ) { "$p" }
        server.admin("upload-limit", """{"bytes":100}""")
        val e = thrown { client.detectFlow(ImageSource.Bytes(png)).toList() }
        expect("an upload over the limit ends the flow with PayloadTooLarge", e is TetherException.PayloadTooLarge) { "got $e" }
        server.admin("upload-limit")
    }

    client.close()
}
