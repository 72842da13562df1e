/*
 * `scripts/bench ffi`, the Kotlin side (run by android/run-jvm-bench.sh): what crossing
 * between Kotlin and the Rust core costs, on a desktop JVM 17 over JNA, against the
 * release libtether.so and a loopback `tether serve`. One line per figure on stdout in the
 * form of shared/BENCHMARKS.md; details (min/max, per-round values) on stderr.
 *
 * - ffi/kotlin_call: microseconds per bare UniFFI call from Kotlin: `CancelHandle.isCancelled()`
 *   (a method on a Rust object returning a bool: the object handle is cloned, the call
 *   made, a RustCallStatus checked; no strings). 7 runs of 20,000 calls after 50,000 warm-up
 *   calls; the median run. No baseline; for context stderr also shows a String-returning
 *   call (`tetherVersion()`) and JNA's own floor (a direct-mapped `getpid()` in libc).
 * - ffi/kotlin_callback: microseconds per call from Rust into Kotlin: the Logger, on its
 *   delivery thread. The Kotlin logger parks on one call while requests queue
 *   150 log records (150 requests, one debug record each) behind it; once released,
 *   the thread delivers them back to back,
 *   so the gap between consecutive calls (their nanoTime stamps) is one crossing: taking
 *   the record, lowering a LogLevel and two Strings, the JNA callback dispatch, lifting
 *   them in Kotlin and a trivial body. The median gap of each of 5 rounds; the median
 *   round. (No bench-only export was added: the Logger is an existing path.) Stderr also
 *   shows the same with the logger calling `Native.detach(false)`, i.e. without JNA's
 *   attach/detach of the Tether thread around every callback.
 * - ffi/kotlin_stream_10k_crossings: `onDelta` calls made while a 10,000-delta reply
 *   streams over about 5 s from the loopback server (script below), through
 *   `sendMessageFlow` (the Flow idiom: each Delta event is one `onDelta` call). Target
 *   <= 330 (one per 16 ms frame). Baseline: the crossings a Rust listener gets for the
 *   same stream (`tether-bench-chat ffi-stream`).
 * - ffi/kotlin_stream_wall_ratio: that stream's wall time on the Kotlin side (collection
 *   start to the Done event) against the Rust-only time of the same stream through the
 *   same server (`send_message` call to return, in the `ffi-stream` process); 5 rounds of
 *   each after one warm-up each, alternating which goes first; value and baseline are the
 *   medians in ms, target on the ratio (<= 1.05).
 *
 *   java -Djna.library.path=<dir of libtether.so> -cp ... dev.tether.jvmbench.FfiBenchKt \
 *       <tether binary> <tether-bench-chat binary>
 */
package dev.tether.jvmbench

import com.sun.jna.Native
import dev.tether.ApiRequest
import dev.tether.CancelHandle
import dev.tether.ChatEvent
import dev.tether.ClientConfig
import dev.tether.HttpMethod
import dev.tether.LogLevel
import dev.tether.Logger
import dev.tether.TetherClient
import dev.tether.TokenStore
import dev.tether.sendMessageFlow
import dev.tether.tetherVersion
import java.io.BufferedReader
import java.io.InputStreamReader
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlin.system.exitProcess
import kotlinx.coroutines.runBlocking

/**
 * The 10,000-delta reply: the pieces of `tether-bench-chat chat` (`tok0 ` .. `tok9999 `),
 * cut into 120-byte chunks (about four events each: ~2,600 chunks) with a 1 ms sleep
 * before each. Here a tokio 1 ms sleep lasts about 2 ms, so the stream takes about 5 s;
 * the measured duration is printed on stderr with each round.
 */
private val STREAM_PIECES = (0 until 10_000).map { "tok$it " }
private val STREAM_SCRIPT =
    """{"pieces":[${STREAM_PIECES.joinToString(",") { "\"$it\"" }}],"chunk_sizes":[120],"delay_ms":1}"""
private val STREAM_TEXT = STREAM_PIECES.joinToString("")

private fun err(s: String) = System.err.println("[ffi-bench] $s")

private fun line(figure: String, unit: String, value: Double, baseline: Double? = null, target: Pair<String, Double>? = null, targetOnRatio: Boolean = false) {
    val sb = StringBuilder("bench $figure value=${"%.3f".format(value)} unit=$unit")
    val ratio = baseline?.let { value / it }
    if (baseline != null) sb.append(" baseline=${"%.3f".format(baseline)} ratio=${"%.3f".format(ratio)}")
    if (target != null) {
        val x = if (targetOnRatio) ratio ?: Double.NaN else value
        val ok = if (target.first == "<=") x <= target.second else x >= target.second
        val t = target.second.let { if (it == Math.rint(it)) it.toLong().toString() else it.toString() }
        sb.append(" target=${target.first}$t ok=$ok")
    }
    println(sb)
    System.out.flush()
}

private fun median(v: List<Double>): Double = v.sorted()[v.size / 2]
private fun spread(v: List<Double>) = "min ${"%.3f".format(v.minOrNull())} max ${"%.3f".format(v.maxOrNull())}"

class MemoryStore : TokenStore {
    @Volatile private var v: String? = null
    override fun load(): String? = v
    override fun save(value: String) { v = value }
    override fun clear() { v = null }
}

/** JNA's floor: a direct-mapped libc call, no UniFFI around it. */
object LibC {
    init { Native.register("c") }
    @JvmStatic external fun getpid(): Int
}

class Server(binary: String) : AutoCloseable {
    private val process = ProcessBuilder(binary, "serve").redirectError(ProcessBuilder.Redirect.INHERIT).start()
    val url: String
    private val http = HttpClient.newHttpClient()
    init {
        val first = BufferedReader(InputStreamReader(process.inputStream)).readLine() ?: error("tether serve printed nothing")
        url = Regex("""^listening (http://\S+)$""").find(first.trim())?.groupValues?.get(1) ?: error("unexpected: $first")
    }
    fun admin(command: String, json: String = "{}") {
        val req = HttpRequest.newBuilder(URI.create("$url/__admin/$command"))
            .header("content-type", "application/json").POST(HttpRequest.BodyPublishers.ofString(json)).build()
        val resp = http.send(req, HttpResponse.BodyHandlers.ofString())
        check(resp.statusCode() == 200) { "admin $command -> ${resp.statusCode()}" }
    }
    override fun close() {
        runCatching { process.outputStream.close() }
        if (!process.waitFor(3, TimeUnit.SECONDS)) process.destroyForcibly()
    }
}

// ---------------------------------------------------------------------------------------

private inline fun usPerCall(n: Int, f: () -> Unit): Double {
    val t = System.nanoTime()
    repeat(n) { f() }
    return (System.nanoTime() - t) / 1000.0 / n
}

private fun callBench() {
    val h = CancelHandle()
    var sink = 0
    repeat(50_000) { if (h.isCancelled()) sink++ }
    val runs = (1..7).map { usPerCall(20_000) { if (h.isCancelled()) sink++ } }
    repeat(5_000) { sink += tetherVersion().length }
    val version = median((1..5).map { usPerCall(5_000) { sink += tetherVersion().length } })
    repeat(50_000) { sink += LibC.getpid() and 1 }
    val floor = median((1..5).map { usPerCall(50_000) { sink += LibC.getpid() and 1 } })
    h.close()
    err("kotlin_call: isCancelled() ${spread(runs)} us; tetherVersion() (a String back) ${"%.3f".format(version)} us; JNA direct getpid() ${"%.3f".format(floor)} us ($sink)")
    line("ffi/kotlin_call", "us", median(runs))
}

/**
 * Stamps every call; parks on the call after `park()` until released. With [keepAttached]
 * it asks JNA not to detach the calling thread from the JVM when the call returns (JNA
 * attaches a foreign thread for each callback and detaches it afterwards by default):
 * how much of a crossing that attach/detach is.
 */
class TimingLogger(private val keepAttached: Boolean = false) : Logger {
    val stamps = LongArray(8192)
    val count = AtomicInteger()
    @Volatile private var gate: CountDownLatch? = null
    @Volatile var parked = false

    fun park(): CountDownLatch = CountDownLatch(1).also { gate = it }

    override fun log(level: LogLevel, target: String, message: String) {
        if (keepAttached) Native.detach(false)
        val g = gate
        if (g != null) {
            gate = null
            parked = true
            g.await()
            parked = false
        }
        val i = count.getAndIncrement()
        if (i < stamps.size) stamps[i] = System.nanoTime()
    }
}

private fun callbackBench(server: Server) {
    val (rounds, sizes) = callbackRounds(server, TimingLogger())
    err("kotlin_callback: ${sizes.joinToString()} back-to-back log calls per round; round medians ${spread(rounds)} us")
    val (attached, _) = callbackRounds(server, TimingLogger(keepAttached = true))
    err("kotlin_callback with Native.detach(false) in the callback (thread left attached to the JVM): median ${"%.3f".format(median(attached))} us, ${spread(attached)} us")
    line("ffi/kotlin_callback", "us", median(rounds))
}

/** Per-round median gaps between back-to-back logger calls, and the calls per round. */
private fun callbackRounds(server: Server, logger: TimingLogger): Pair<List<Double>, List<Int>> {
    val dir = Files.createTempDirectory("tether-ffi-log-").toString()
    val config = ClientConfig(baseUrl = server.url, clientId = "ffi-bench", dataDir = dir, logLevel = LogLevel.DEBUG)
    val client = TetherClient.withLogger(config, MemoryStore(), logger)
    val quota = ApiRequest(method = HttpMethod.GET, path = "quota")
    runBlocking {
        client.restoreSession()
        client.signInAnonymously(null, null)
        repeat(50) { client.send(quota, null) } // warm-up, logs included
    }
    val rounds = mutableListOf<Double>()
    val sizes = mutableListOf<Int>()
    repeat(6) { round ->
        Thread.sleep(200) // let earlier records drain
        val gate = logger.park()
        runBlocking {
            while (!logger.parked) client.send(quota, null)
            repeat(150) { client.send(quota, null) }
        }
        logger.count.set(0)
        gate.countDown()
        var last = -1
        while (logger.count.get() != last) {
            last = logger.count.get()
            Thread.sleep(300)
        }
        val n = minOf(last, logger.stamps.size)
        val gaps = (1 until n).map { (logger.stamps[it] - logger.stamps[it - 1]) / 1000.0 }
        if (round > 0 && gaps.size >= 100) {
            rounds += median(gaps)
            sizes += n
        }
    }
    client.close()
    check(rounds.isNotEmpty()) { "the logger delivered too few records to time" }
    return rounds to sizes
}

/** The Rust-only side of the stream bench: `tether-bench-chat ffi-stream`, one process. */
class RustStreamer(binary: String, url: String) : AutoCloseable {
    private val process = ProcessBuilder(binary, "ffi-stream", url, Files.createTempDirectory("tether-ffi-rust-").toString())
        .redirectError(ProcessBuilder.Redirect.INHERIT).start()
    private val out = BufferedReader(InputStreamReader(process.inputStream))

    /** Seconds, onDelta calls. */
    fun stream(script: String): Pair<Double, Int> {
        process.outputStream.write((script + "\n").toByteArray())
        process.outputStream.flush()
        val parts = (out.readLine() ?: error("tether-bench-chat ffi-stream ended")).trim().split(" ")
        check(parts[2].toInt() == STREAM_TEXT.length) { "the Rust-side reply is ${parts[2]} chars" }
        return parts[0].toDouble() to parts[1].toInt()
    }

    override fun close() {
        runCatching { process.outputStream.close() }
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly()
    }
}

private fun streamBench(server: Server, benchChat: String) {
    server.admin("quota-limit", """{"limit":1000000}""")
    val dir = Files.createTempDirectory("tether-ffi-kt-").toString()
    val client = TetherClient(ClientConfig(baseUrl = server.url, clientId = "ffi-bench", dataDir = dir), MemoryStore())
    val conv = runBlocking {
        client.restoreSession()
        client.signInAnonymously(null, null)
        client.createConversation("ffi", null).id
    }
    fun kotlinStream(): Pair<Double, Int> {
        server.admin("chat-script", STREAM_SCRIPT)
        var crossings = 0
        var content: String? = null
        val t = System.nanoTime()
        runBlocking {
            client.sendMessageFlow(conv, "go").collect { e ->
                when (e) {
                    is ChatEvent.Delta -> crossings++
                    is ChatEvent.Done -> content = e.message.content
                }
            }
        }
        val secs = (System.nanoTime() - t) / 1e9
        check(content == STREAM_TEXT) { "the Kotlin-side reply is ${content?.length} chars" }
        return secs to crossings
    }
    val kt = mutableListOf<Pair<Double, Int>>()
    val rs = mutableListOf<Pair<Double, Int>>()
    RustStreamer(benchChat, server.url).use { rust ->
        for (round in 0..5) {
            val (a, b) = if (round % 2 == 0) {
                val k = kotlinStream(); k to rust.stream(STREAM_SCRIPT)
            } else {
                val r = rust.stream(STREAM_SCRIPT); kotlinStream() to r
            }
            err("stream round $round${if (round == 0) " (warm-up)" else ""}: kotlin ${"%.3f".format(a.first)} s ${a.second} onDelta; rust ${"%.3f".format(b.first)} s ${b.second} on_delta")
            if (round > 0) { kt += a; rs += b }
        }
    }
    client.close()
    val ktCross = kt.map { it.second.toDouble() }
    val rsCross = rs.map { it.second.toDouble() }
    val ktMs = kt.map { it.first * 1000 }
    val rsMs = rs.map { it.first * 1000 }
    err("kotlin_stream: crossings ${spread(ktCross)}, rust ${spread(rsCross)}; wall kotlin ${spread(ktMs)} ms, rust ${spread(rsMs)} ms")
    line("ffi/kotlin_stream_10k_crossings", "count", median(ktCross), median(rsCross), "<=" to 330.0)
    line("ffi/kotlin_stream_wall_ratio", "ms", median(ktMs), median(rsMs), "<=" to 1.05, targetOnRatio = true)
}

fun main(args: Array<String>) {
    if (args.size < 2) {
        err("usage: FfiBenchKt <tether binary> <tether-bench-chat binary>")
        exitProcess(2)
    }
    callBench()
    Server(args[0]).use { server ->
        callbackBench(server)
        streamBench(server, args[1])
    }
    exitProcess(0)
}
