// Tether binding scenario in Swift (XCTest, async/await): the same steps as the Kotlin
// scenario in android/src/jvmTest/kotlin/dev/tether/jvmtest/ScenarioTest.kt.
//
// NOT COMPILED OR RUN HERE: there was no Swift toolchain on the machine this was written on.
//
// How to run (on a Mac): `cargo build -p tether-cli`, `ios/build-xcframework.sh`, then
// `cd ios && swift test`. On macOS the test starts the contract server itself
// (`target/debug/tether serve`, or $TETHER_SERVER_BIN) and reads its address from the first
// line of its stdout. On the iOS simulator a test cannot start processes: start
// `target/debug/tether serve` yourself and pass its address as TETHER_SERVER_URL (the
// simulator shares the Mac's loopback), e.g. in the scheme's test environment.
//
// Cancellation: cancelling a Swift `Task` does NOT reach Rust with UniFFI (the awaiting Task
// keeps waiting until the Rust future finishes by itself). That is why the long calls take a
// `CancelHandle`, and why the package adds `withCancelHandle { ... }`, which cancels its
// handle from `withTaskCancellationHandler`. Both are exercised below, as are the package's
// `replyStream` (AsyncThrowingStream), `authStates` and `quotaStates` (AsyncStream).

import Foundation
import XCTest
import Tether

// MARK: - Swift implementations of the foreign traits

/// What an app would back with the Keychain.
final class MapTokenStore: TokenStore, @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    private var saveCount = 0

    var value: String? { locked { stored } }
    var saves: Int { locked { saveCount } }

    func load() throws -> String? { locked { stored } }
    func save(value: String) throws { locked { stored = value; saveCount += 1 } }
    func clear() throws { locked { stored = nil } }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

/// A store that is never available (a locked keychain during prewarming).
final class FailingTokenStore: TokenStore, @unchecked Sendable {
    func load() throws -> String? { throw TokenStoreError.Unavailable(detail: "keychain locked") }
    func save(value: String) throws { throw TokenStoreError.Unavailable(detail: "keychain locked") }
    func clear() throws { throw TokenStoreError.Unavailable(detail: "keychain locked") }
}

final class RecordingListener: AuthListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _states: [AuthState] = []
    private var _refreshed: [String] = []

    var states: [AuthState] { lock.lock(); defer { lock.unlock() }; return _states }
    var refreshed: [String] { lock.lock(); defer { lock.unlock() }; return _refreshed }

    func onStateChanged(state: AuthState) { lock.lock(); _states.append(state); lock.unlock() }
    func onSessionRefreshed(userId: String) { lock.lock(); _refreshed.append(userId); lock.unlock() }
}

/// Records the paywalls a QuotaListener hears (calls arrive on a Tether thread).
final class RecordingQuota: QuotaListener, @unchecked Sendable {
    private let lock = NSLock()
    private var heard: [String] = []
    var paywalls: [String] { lock.lock(); defer { lock.unlock() }; return heard }
    func onQuotaChanged(state: QuotaState) {}
    func onPaywall(planRequired: String, state: QuotaState) {
        lock.lock(); heard.append(planRequired); lock.unlock()
    }
}

final class RecordingLogger: Logger, @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []

    var lines: [String] { lock.lock(); defer { lock.unlock() }; return _lines }

    func log(level: LogLevel, target: String, message: String) {
        lock.lock(); _lines.append("\(level) \(target) \(message)"); lock.unlock()
    }
}

final class RecordingChat: ChatListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _deltas: [String] = []
    private var _completed: [Message] = []

    var deltas: [String] { lock.lock(); defer { lock.unlock() }; return _deltas }
    var completed: [Message] { lock.lock(); defer { lock.unlock() }; return _completed }

    func onDelta(messageId: String, text: String) { lock.lock(); _deltas.append(text); lock.unlock() }
    func onComplete(message: Message) { lock.lock(); _completed.append(message); lock.unlock() }
    func onError(messageId: String, error: TetherError) {}
}

// MARK: - The contract server and its admin endpoints

final class ContractServer {
    let base: String
    /// Ends the launched server (macOS); nil for an external one.
    private var stopLaunched: (() -> Void)?

    enum Failure: Error { case noAddress(String), admin(String) }

    private init(base: String) { self.base = base }

    /// TETHER_SERVER_URL if set; otherwise (macOS) launches `tether serve`.
    static func start() throws -> ContractServer {
        let env = ProcessInfo.processInfo.environment
        if let url = env["TETHER_SERVER_URL"], !url.isEmpty {
            return ContractServer(base: url)
        }
        #if os(macOS)
        let root = URL(fileURLWithPath: #filePath)   // ios/Tests/TetherTests/ScenarioTests.swift
            .deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let binary = env["TETHER_SERVER_BIN"] ?? root.appendingPathComponent("target/debug/tether").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        var data = Data()
        while !data.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { throw Failure.noAddress("tether serve exited without an address") }
            data.append(chunk)
        }
        let line = String(decoding: data.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let prefix = "listening "
        guard line.hasPrefix(prefix) else { throw Failure.noAddress(line) }
        let server = ContractServer(base: String(line.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces))
        server.stopLaunched = {
            try? input.fileHandleForWriting.close()   // stdin closes: the server exits
            let deadline = Date().addingTimeInterval(3)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { process.terminate() }
        }
        return server
        #else
        throw XCTSkip("set TETHER_SERVER_URL to a running `tether serve` (no processes on iOS)")
        #endif
    }

    @discardableResult
    func admin(_ command: String, _ json: String = "{}") async throws -> Data {
        var request = URLRequest(url: URL(string: "\(base)/__admin/\(command)")!)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(json.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else {
            throw Failure.admin("\(command): \(String(decoding: data, as: UTF8.self))")
        }
        return data
    }

    /// Whether the newest admin `hold` on `path` has caught its request.
    func holdHandled(_ path: String) async throws -> Bool {
        let data = try await admin("hold-state", #"{"path":"\#(path)"}"#)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return object?["handled"] as? Bool ?? false
    }

    func count(_ path: String) async throws -> Int {
        let data = try await admin("count", #"{"path":"\#(path)"}"#)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return object?["count"] as? Int ?? -1
    }

    func stop() {
        stopLaunched?()
        stopLaunched = nil
    }
}

// MARK: - Helpers

private let quotaCall = ApiRequest(method: .get, path: "quota")
private let jobCall = ApiRequest(
    method: .post, path: "jobs",
    jsonBody: #"{"kind":"transcribe","input":{"media":"swift-test.m4a"}}"#)

/// The TetherError `body` throws, or nil if it returned (other errors fail the test).
private func tetherError(_ body: () async throws -> Void,
                         file: StaticString = #filePath, line: UInt = #line) async -> TetherError? {
    do {
        try await body()
        return nil
    } catch let e as TetherError {
        return e
    } catch {
        XCTFail("expected a TetherError, got \(error)", file: file, line: line)
        return nil
    }
}

/// Polls `cond` for up to `timeout` seconds (listener calls arrive on a Tether thread).
private func eventually(_ timeout: TimeInterval = 5, _ cond: () -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if cond() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return cond()
}


/// Records every upload progress call.
final class RecordingProgress: UploadProgress, @unchecked Sendable {
    private let lock = NSLock()
    private var _calls: [(UInt32, UInt32, UInt32)] = []
    var calls: [(UInt32, UInt32, UInt32)] { lock.lock(); defer { lock.unlock() }; return _calls }
    func onProgress(attempt: UInt32, sent: UInt32, total: UInt32) {
        lock.lock(); _calls.append((attempt, sent, total)); lock.unlock()
    }
}

private let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

private func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}

private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

private func pngChunk(_ kind: String, _ data: [UInt8]) -> [UInt8] {
    let body = Array(kind.utf8) + data
    return be32(UInt32(data.count)) + body + be32(crc32(body))
}

/// zlib with stored (uncompressed) deflate blocks: enough for a test PNG.
private func zlibStored(_ data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [0x78, 0x01]
    var i = 0
    repeat {
        let n = min(65535, data.count - i)
        let last: UInt8 = i + n >= data.count ? 1 : 0
        out += [last, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
        out += data[i..<(i + n)]
        i += n
    } while i < data.count
    var a: UInt32 = 1, b: UInt32 = 0
    for x in data { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
    return out + be32((b << 16) | a)
}

/// A PNG made by hand (red above blue) with a tEXt chunk naming a place, and the same file
/// without the text chunk (what a lossless strip must send).
private func pngWithText(width w: Int, height h: Int) -> (Data, Data) {
    var rows: [UInt8] = []
    for y in 0..<h {
        rows.append(0)
        let px: [UInt8] = y < h / 2 ? [0xE0, 0x10, 0x10] : [0x10, 0x10, 0xE0]
        for _ in 0..<w { rows += px }
    }
    let sig: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    let head = sig + pngChunk("IHDR", be32(UInt32(w)) + be32(UInt32(h)) + [8, 2, 0, 0, 0])
    let text = pngChunk("tEXt", Array("Location".utf8) + [0] + Array("48.8583N 2.2945E".utf8))
    let rest = pngChunk("IDAT", zlibStored(rows)) + pngChunk("IEND", [])
    return (Data(head + text + rest), Data(head + rest))
}

// MARK: - The scenario

final class ScenarioTests: XCTestCase {
    private var server: ContractServer!
    private var dataDir: String!

    override func setUpWithError() throws {
        server = try ContractServer.start()
        dataDir = (NSTemporaryDirectory() as NSString)
            .appendingPathComponent("tether-swift-\(UUID().uuidString)")
    }

    override func tearDown() {
        server?.stop()
        super.tearDown()
    }

    private func config(_ subdir: String = "main") -> ClientConfig {
        ClientConfig(
            baseUrl: server.base,
            clientId: "swift-scenario",
            dataDir: (dataDir as NSString).appendingPathComponent(subdir),
            // Short backoff: the scenario does not wait on retries it does not test.
            retry: RetryPolicy(maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 200, maxRetryAfterS: 2),
            userAgentSuffix: "ScenarioTests/1.0")
    }

    /// scenario step 1
    func testConfigValidation() throws {
        var bad = config()
        bad.baseUrl = "http://example.com"
        XCTAssertThrowsError(try TetherClient(config: bad, tokenStore: MapTokenStore())) { error in
            guard case .Config? = error as? TetherError else {
                return XCTFail("http:// for a non-loopback host: expected .Config, got \(error)")
            }
        }
        var blank = config()
        blank.clientId = " "
        XCTAssertThrowsError(try TetherClient(config: blank, tokenStore: MapTokenStore())) { error in
            guard case .Config? = error as? TetherError else {
                return XCTFail("blank clientId: expected .Config, got \(error)")
            }
        }
    }

    /// scenario step 11
    func testFailingTokenStoreKeepsStateUnknown() async throws {
        let client = try TetherClient(config: config("failing"), tokenStore: FailingTokenStore())
        let e = await tetherError { _ = try await client.restoreSession() }
        guard case let .Storage(message)? = e else {
            return XCTFail("restoreSession with a failing store: expected .Storage, got \(String(describing: e))")
        }
        XCTAssertTrue(message.contains("keychain locked"), message)
        XCTAssertEqual(client.authState(), .unknown, "a failing store must not sign the user out")
    }

    /// scenario step 14: detect with a Swift UploadProgress on a PNG written by hand (with
    /// a tEXt chunk, named .jpg); the server received it without the chunk; then a 413 and a
    /// 402. (Apps convert HEIC first: `UIImage.jpegData(compressionQuality:)`.)
    func testImageUpload() async throws {
        let client = try TetherClient(config: config("upload"), tokenStore: MapTokenStore())
        _ = try await client.signInAnonymously(deviceId: "device-swift-upload", cancel: nil)
        let (png, stripped) = pngWithText(width: 120, height: 80)
        let path = (dataDir as NSString).appendingPathComponent("photo.jpg")
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        try png.write(to: URL(fileURLWithPath: path))
        let progress = RecordingProgress()
        let d = try await client.detect(image: .file(path: path), options: nil, progress: progress, cancel: nil)
        XCTAssertEqual(d.objects.first?.label, "cat")
        XCTAssertEqual(d.image.mediaType, "image/png")
        XCTAssertEqual(d.image.width, 120)
        XCTAssertEqual(d.image.height, 80)
        XCTAssertFalse(d.image.resized)
        XCTAssertTrue(d.image.metadataStripped)
        XCTAssertEqual(Int(d.image.byteSize), stripped.count)
        let ups = try JSONSerialization.jsonObject(with: try await server.admin("uploads")) as? [String: Any]
        let list = ups?["uploads"] as? [[String: Any]] ?? []
        XCTAssertEqual(list.count, 1)
        XCTAssertEqual(list.first?["len"] as? Int, stripped.count, "the text chunk was removed")
        XCTAssertEqual(list.first?["content_type"] as? String, "image/png")
        let last = progress.calls.last
        XCTAssertEqual(last?.0, 1)
        XCTAssertEqual(last?.1, last?.2, "the last progress call is sent == total: \(progress.calls)")

        try await server.admin("upload-limit", #"{"bytes":100}"#)
        let tooBig = await tetherError { _ = try await client.detect(image: .file(path: path), options: nil, progress: nil, cancel: nil) }
        if case let .PayloadTooLarge(maxBytes, _)? = tooBig {
            XCTAssertEqual(maxBytes, 100)
        } else {
            XCTFail("expected .PayloadTooLarge, got \(String(describing: tooBig))")
        }
        try await server.admin("upload-limit")
        try await server.admin("quota-limit", #"{"limit":0}"#)
        let paywall = await tetherError { _ = try await client.detect(image: .bytes(data: png), options: nil, progress: RecordingProgress(), cancel: nil) }
        if case let .PlanRequired(planRequired, reported, _)? = paywall {
            XCTAssertEqual(planRequired, "pro")
            XCTAssertEqual(reported?.remaining, 0)
        } else {
            XCTFail("expected .PlanRequired, got \(String(describing: paywall))")
        }
        XCTAssertEqual(client.quota().paywall, "pro")
        let heardPaywall = await eventually { quotaHeard.paywalls == ["pro"] }
        XCTAssertTrue(heardPaywall, "QuotaListener: \(quotaHeard.paywalls)")
        let sentJobs = try await server.count("/api/v1/jobs")
        let fast = await tetherError { _ = try await client.send(request: jobCall, cancel: nil) }
        guard case .PlanRequired? = fast else {
            return XCTFail("fail-fast: expected .PlanRequired, got \(String(describing: fast))")
        }
        let sentAfter = try await server.count("/api/v1/jobs")
        XCTAssertEqual(sentAfter, sentJobs, "fail-fast sent a request")
        try await server.admin("plan", #"{"plan":"pro","limit":5000}"#)
        let lifted = try await client.refreshQuota(cancel: nil)
        XCTAssertEqual(lifted.plan, "pro")
        XCTAssertNil(lifted.paywall)
        XCTAssertEqual(lifted.source, .server)
        let again = try await client.send(request: jobCall, cancel: nil)
        XCTAssertEqual(again.status, 202)
        quotaSubscription.cancel()
        var cached = try TetherClient(config: config(), tokenStore: MapTokenStore()).quota()
        for _ in 0..<100 where cached.source != .cached {
            try await Task.sleep(nanoseconds: 20_000_000)
            cached = try TetherClient(config: config(), tokenStore: MapTokenStore()).quota()
        }
        XCTAssertEqual(cached.source, .cached)
        XCTAssertEqual(cached.plan, "pro")
        try await server.admin("plan", #"{"plan":"free","limit":50}"#)
        try await server.admin("quota-limit", #"{"limit":50}"#)
        let q = try await client.refreshQuota(cancel: nil)
        XCTAssertNil(q.paywall)
    }

    func testScenario() async throws {
        XCTAssertFalse(tetherVersion().isEmpty)

        let store = MapTokenStore()
        let logger = RecordingLogger()
        let listener = RecordingListener()
        let client = try TetherClient.withLogger(config: config(), tokenStore: store, logger: logger)
        let subscription = client.addAuthListener(listener: listener)
        defer { subscription.cancel() }   // Swift frees the objects on release; no close()

        // scenario step 2: first launch, nothing stored.
        XCTAssertEqual(client.authState(), .unknown)
        let restored = try await client.restoreSession()
        XCTAssertEqual(restored, .signedOut)
        let heardSignedOut = await eventually { listener.states.last == .signedOut }
        XCTAssertTrue(heardSignedOut, "listener: \(listener.states)")

        // scenario step 3: anonymous sign-in, the Swift TokenStore receives the session, the listener hears it.
        let user = try await client.signInAnonymously(deviceId: "device-swift-1", cancel: nil)
        XCTAssertTrue(user.anonymous)
        XCTAssertFalse(user.id.isEmpty)
        XCTAssertEqual(store.saves, 1)
        XCTAssertTrue(store.value?.contains(user.id) == true)
        XCTAssertTrue(store.value?.contains("refresh_token") == true)
        XCTAssertEqual(client.authState(), .signedIn(userId: user.id, anonymous: true))
        let heardSignedIn = await eventually { listener.states.last == .signedIn(userId: user.id, anonymous: true) }
        XCTAssertTrue(heardSignedIn, "listener: \(listener.states)")

        // scenario step 4: a call through the pipeline; quota headers are recorded.
        let quota = try await client.send(request: quotaCall, cancel: nil)
        XCTAssertEqual(quota.status, 200)
        XCTAssertTrue(quota.body.contains(#""plan""#), quota.body)
        XCTAssertTrue(quota.requestId?.hasPrefix("req-") == true)
        let last = client.quota()
        XCTAssertEqual(last.plan, "free")
        XCTAssertGreaterThan(last.limit ?? 0, 0)
        XCTAssertEqual(last.source, .server)

        // scenario step 5: expired tokens, then 10 concurrent calls: all succeed with exactly one refresh.
        let oldToken = try await client.accessToken(cancel: nil)
        try await server.admin("expire-tokens")
        let before = try await server.count("/api/v1/auth/refresh")
        let statuses: [UInt16] = try await withThrowingTaskGroup(of: UInt16.self) { group in
            for _ in 0..<10 {
                group.addTask { try await client.send(request: quotaCall, cancel: nil).status }
            }
            var out: [UInt16] = []
            for try await s in group { out.append(s) }
            return out
        }
        XCTAssertEqual(statuses, Array(repeating: 200, count: 10))
        let refreshes = try await server.count("/api/v1/auth/refresh") - before
        XCTAssertEqual(refreshes, 1, "single-flight refresh")
        let heardRefresh = await eventually { listener.refreshed.contains(user.id) }
        XCTAssertTrue(heardRefresh, "listener.refreshed: \(listener.refreshed)")
        let newToken = try await client.accessToken(cancel: nil)
        XCTAssertNotEqual(newToken, oldToken)
        XCTAssertEqual(store.saves, 2)
        XCTAssertTrue(store.value?.contains(newToken) == true)

        // Next launch: a second client on the same store restores the session.
        let second = try TetherClient(config: config("next-launch"), tokenStore: store)
        let secondState = try await second.restoreSession()
        XCTAssertEqual(secondState, .signedIn(userId: user.id, anonymous: true))

        // scenario step 6: a 503 with Retry-After: 0 is retried transparently.
        // A GET (not metered: a job here would use up the quota step 7 counts on).
        try await server.admin("fault", #"{"path":"/api/v1/quota","status":503,"retry_after":0}"#)
        let quotaCallsBefore = try await server.count("/api/v1/quota")
        let retried = try await client.send(request: quotaCall, cancel: nil)
        XCTAssertEqual(retried.status, 200)
        let quotaCallsAfter = try await server.count("/api/v1/quota")
        XCTAssertEqual(quotaCallsAfter - quotaCallsBefore, 2)

        // scenario step 7: quota used up -> PlanRequired("pro"), heard once by a Swift
        // QuotaListener; then fail-fast, the purchase, and the saved state on a new client.
        let quotaHeard = RecordingQuota()
        let quotaSubscription = client.addQuotaListener(listener: quotaHeard)
        try await server.admin("quota-limit", #"{"limit":1}"#)
        let job = try await client.send(request: jobCall, cancel: nil)
        XCTAssertEqual(job.status, 202)
        let paywall = await tetherError { _ = try await client.send(request: jobCall, cancel: nil) }
        if case let .PlanRequired(planRequired, reported, _)? = paywall {
            XCTAssertEqual(planRequired, "pro")
            XCTAssertEqual(reported?.remaining, 0)
        } else {
            XCTFail("expected .PlanRequired, got \(String(describing: paywall))")
        }
        try await server.admin("quota-limit", #"{"limit":50}"#)

        // scenario step 8: a CancelHandle ends a call whose answer the server holds back
        // until `release`: the call can only end before that by its cancellation.
        try await server.admin("hold", #"{"path":"/api/v1/quota"}"#)
        let handle = CancelHandle()
        let held = Task { try await client.send(request: quotaCall, cancel: handle) }
        var reached = false
        for _ in 0..<500 where !reached {
            reached = try await server.holdHandled("/api/v1/quota")
            if !reached { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        XCTAssertTrue(reached, "the call never reached the server")
        handle.cancel()
        let heldResult = await held.result
        if case .failure(let error) = heldResult, case .Cancelled? = error as? TetherError {
        } else {
            XCTFail("CancelHandle: expected .Cancelled, got \(heldResult)")
        }
        try await server.admin("release", #"{"path":"/api/v1/quota"}"#)
        XCTAssertTrue(handle.isCancelled())

        // Task cancellation: `Task.cancel()` alone would not reach Rust (see the top of the
        // file); withCancelHandle bridges it to a CancelHandle. The client works afterwards.
        try await server.admin("hold", #"{"path":"/api/v1/quota"}"#)
        let task = Task { try await withCancelHandle { try await client.send(request: quotaCall, cancel: $0) } }
        reached = false
        for _ in 0..<500 where !reached {
            reached = try await server.holdHandled("/api/v1/quota")
            if !reached { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        XCTAssertTrue(reached, "the call never reached the server")
        task.cancel()
        let taskResult = await task.result
        if case .failure(let error) = taskResult, case .Cancelled? = error as? TetherError {
        } else {
            XCTFail("Task cancellation: expected .Cancelled, got \(taskResult)")
        }
        try await server.admin("release", #"{"path":"/api/v1/quota"}"#)
        let after = try await client.send(request: quotaCall, cancel: nil)
        XCTAssertEqual(after.status, 200)

        // scenario step 15: a reply streamed through a Swift listener into
        // the history and paged back, a search, and a cancelled reply kept as Cancelled.
        let pieces = (0..<30).map { "piece\($0) caf\u{e9} " }
        let piecesJSON = pieces.map { "\"\($0)\"" }.joined(separator: ",")
        try await server.admin("chat-script", #"{"pieces":[\#(piecesJSON)],"chunk_sizes":[3,5],"line_end":"crlf","keep_alive_every":2}"#)
        let conv = try await client.createConversation(title: "scenario", systemPrompt: "Be brief.")
        let chat = RecordingChat()
        let reply = try await client.sendMessage(
            conversationId: conv.id, text: "hello from swift", options: nil, listener: chat, cancel: nil)
        XCTAssertEqual(reply.status, .complete)
        XCTAssertEqual(reply.content, pieces.joined())
        XCTAssertEqual(chat.deltas.joined(), reply.content)
        let page = try await client.listMessages(conversationId: conv.id, at: .newest, limit: 1)
        XCTAssertEqual(page.messages.first?.id, reply.id)
        XCTAssertTrue(page.hasMore)
        let older = try await client.listMessages(
            conversationId: conv.id, at: .before(messageId: reply.id), limit: 10)
        XCTAssertEqual(older.messages.map(\.content), ["hello from swift"])
        // scenario step 16
        let hits = try await client.searchMessages(query: SearchQuery(text: "piece7"), cancel: nil)
        XCTAssertEqual(hits.first?.message.id, reply.id)
        XCTAssertTrue(hits.first?.snippet.contains("[piece7]") ?? false)
        for text in ["\"quoted", "AND", "*", "(NEAR", "-x"] {
            _ = try await client.searchMessages(query: SearchQuery(text: text), cancel: nil)
        }
        // scenario step 17
        try await server.admin("chat-script", #"{"repeat":["word ",2000],"delay_ms":5}"#)
        let slow = RecordingChat()
        let stop = CancelHandle()
        let long = Task {
            try await client.sendMessage(
                conversationId: conv.id, text: "a long one", options: nil, listener: slow, cancel: stop)
        }
        let started = await eventually(10) { !slow.deltas.isEmpty }
        XCTAssertTrue(started)
        stop.cancel()
        let longResult = await long.result
        if case .failure(let error) = longResult, case .Cancelled? = error as? TetherError {
        } else {
            XCTFail("chat cancel: expected .Cancelled, got \(longResult)")
        }
        let cut = try await client.listMessages(conversationId: conv.id, at: .newest, limit: 1).messages[0]
        XCTAssertEqual(cut.status, .cancelled)
        XCTAssertFalse(cut.content.isEmpty)
        XCTAssertTrue(String(repeating: "word ", count: 2000).hasPrefix(cut.content))

        // scenario step 18 (Swift has no upload-progress stream; its idioms are these three)
        // The idioms: a reply as an AsyncThrowingStream (deltas, then the stored reply), and
        // a stream left early, which cancels the Rust stream: the reply is kept as cancelled.
        try await server.admin("chat-script", #"{"pieces":[\#(piecesJSON)],"chunk_sizes":[4]}"#)
        var streamed = ""
        var finished: Message?
        for try await event in client.replyStream(conversationId: conv.id, text: "streamed") {
            switch event {
            case let .delta(_, text): streamed += text
            case let .finished(message): finished = message
            }
        }
        XCTAssertEqual(finished?.status, .complete)
        XCTAssertEqual(finished?.content, pieces.joined())
        XCTAssertEqual(streamed, pieces.joined())
        try await server.admin("chat-script", #"{"repeat":["word ",2000],"delay_ms":5}"#)
        for try await event in client.replyStream(conversationId: conv.id, text: "left early") {
            if case .delta = event { break }
        }
        var left: Message?
        for _ in 0..<500 where left?.status != .cancelled {
            left = try await client.listMessages(conversationId: conv.id, at: .newest, limit: 1).messages.first
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTAssertEqual(left?.status, .cancelled, "leaving the stream early should store the reply as cancelled")

        // The auth state and the quota as AsyncStreams: the current value first.
        var states = client.authStates.makeAsyncIterator()
        let nowState = await states.next()
        XCTAssertEqual(nowState, client.authState())
        var quotas = client.quotaStates.makeAsyncIterator()
        let nowQuota = await quotas.next()
        XCTAssertEqual(nowQuota?.plan, client.quota().plan)

        // scenario step 9: the Swift Logger got log lines, none with a token in it.
        let access = try await client.accessToken(cancel: nil)
        let stored = try JSONSerialization.jsonObject(with: Data((store.value ?? "{}").utf8)) as? [String: Any]
        let refresh = stored?["refresh_token"] as? String ?? ""
        let lines = logger.lines
        XCTAssertGreaterThanOrEqual(lines.count, 3)
        XCTAssertTrue(lines.contains { $0.contains("signed in") })
        XCTAssertGreaterThan(access.count, 20)
        XCTAssertGreaterThan(refresh.count, 8)
        XCTAssertFalse(lines.contains { $0.contains(access) }, "a log line contains the access token")
        XCTAssertFalse(lines.contains { $0.contains(refresh) }, "a log line contains the refresh token")

        // scenario step 10: sign-out clears the state and the store; later calls are SignedOut.
        try await client.signOut()
        XCTAssertEqual(client.authState(), .signedOut)
        XCTAssertNil(store.value)
        let heardSignOut = await eventually { listener.states.last == .signedOut }
        XCTAssertTrue(heardSignOut, "listener: \(listener.states)")
        let afterSignOut = await tetherError { _ = try await client.send(request: quotaCall, cancel: nil) }
        guard case .SignedOut? = afterSignOut else {
            return XCTFail("a call after sign-out: expected .SignedOut, got \(String(describing: afterSignOut))")
        }
    }

    /// scenario step 12 and scenario step 13: an image decoded to a PNG file, a job waited on to the end.
    func testImagesAndJobs() async throws {
        _ = try await server.admin("quota-limit", #"{"limit":50}"#)
        let client = try TetherClient(config: config("media"), tokenStore: MapTokenStore())
        _ = try await client.restoreSession(cancel: nil)
        _ = try await client.signInAnonymously(deviceId: nil, cancel: nil)
        let out = (dataDir as NSString).appendingPathComponent("pictures")

        let img = try await client.generateImage(
            prompt: "a lighthouse",
            options: ImageOptions(width: 300, height: 100, path: (out as NSString).appendingPathComponent("a.png")),
            cancel: nil)
        XCTAssertEqual([img.width, img.height], [300, 256], "the size comes from the IHDR")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: img.path))
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(bytes.count, Int(img.byteSize))
        _ = try await server.admin("image-fault", #"{"kind":"not-png"}"#)
        let bad = await tetherError {
            _ = try await client.generateImage(
                prompt: "broken",
                options: ImageOptions(width: 256, height: 256, path: (out as NSString).appendingPathComponent("b.png")),
                cancel: nil)
        }
        guard case .Decode? = bad else {
            return XCTFail("a non-PNG reply: expected .Decode, got \(String(describing: bad))")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["a.png"])

        let job = try await client.submitJob(
            kind: "transcribe", inputJson: #"{"url":"https://example.com/a.mp3","steps":3}"#, cancel: nil)
        XCTAssertEqual(job.status, .queued)
        let heard = RecordingJobListener()
        let done = try await client.waitForJob(id: job.id, listener: heard, cancel: nil)
        XCTAssertEqual(done.status, .succeeded)
        XCTAssertTrue(done.resultJson?.contains("transcript") ?? false)
        XCTAssertEqual(heard.statuses, [.running, .succeeded])
        let failing = try await client.submitJob(
            kind: "transcribe", inputJson: #"{"url":"https://example.com/a.mp3","fail":true}"#, cancel: nil)
        let failed = try await client.waitForJob(id: failing.id, listener: RecordingJobListener(), cancel: nil)
        XCTAssertEqual(failed.status, .failed)
        XCTAssertEqual(failed.error?.code, "internal")
        let unknownKind = await tetherError { _ = try await client.submitJob(kind: "summarize", inputJson: "{}", cancel: nil) }
        guard case let .InvalidInput(code, _, _)? = unknownKind, code == "invalid_input" else {
            return XCTFail("unknown kind: expected .InvalidInput(invalid_input), got \(String(describing: unknownKind))")
        }
        let unknownId = await tetherError { _ = try await client.job(id: "j_missing", cancel: nil) }
        guard case let .InvalidInput(code, _, _)? = unknownId, code == "not_found" else {
            return XCTFail("unknown id: expected .InvalidInput(not_found), got \(String(describing: unknownId))")
        }
    }
}

/// Records every job status a wait reports (calls arrive on a Tether thread).
final class RecordingJobListener: JobListener, @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [JobStatus] = []
    var statuses: [JobStatus] { lock.lock(); defer { lock.unlock() }; return seen }
    func onStatusChanged(job: JobInfo) {
        lock.lock(); seen.append(job.status); lock.unlock()
    }
}
