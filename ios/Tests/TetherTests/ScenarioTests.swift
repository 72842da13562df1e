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
// `CancelHandle`, and why the package adds `sendCancellable(_:)`, which cancels its handle
// from `withTaskCancellationHandler`. Both are exercised below.

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

    func testFailingTokenStoreKeepsStateUnknown() async throws {
        let client = try TetherClient(config: config("failing"), tokenStore: FailingTokenStore())
        let e = await tetherError { _ = try await client.restoreSession() }
        guard case let .Storage(message)? = e else {
            return XCTFail("restoreSession with a failing store: expected .Storage, got \(String(describing: e))")
        }
        XCTAssertTrue(message.contains("keychain locked"), message)
        XCTAssertEqual(client.authState(), .unknown, "a failing store must not sign the user out")
    }

    func testScenario() async throws {
        XCTAssertFalse(tetherVersion().isEmpty)

        let store = MapTokenStore()
        let logger = RecordingLogger()
        let listener = RecordingListener()
        let client = try TetherClient.withLogger(config: config(), tokenStore: store, logger: logger)
        let subscription = client.addAuthListener(listener: listener)
        defer { subscription.cancel() }   // Swift frees the objects on release; no close()

        // First launch: nothing stored.
        XCTAssertEqual(client.authState(), .unknown)
        let restored = try await client.restoreSession()
        XCTAssertEqual(restored, .signedOut)
        let heardSignedOut = await eventually { listener.states.last == .signedOut }
        XCTAssertTrue(heardSignedOut, "listener: \(listener.states)")

        // Anonymous sign-in: the Swift TokenStore receives the session, the listener hears it.
        let user = try await client.signInAnonymously(deviceId: "device-swift-1", cancel: nil)
        XCTAssertTrue(user.anonymous)
        XCTAssertFalse(user.id.isEmpty)
        XCTAssertEqual(store.saves, 1)
        XCTAssertTrue(store.value?.contains(user.id) == true)
        XCTAssertTrue(store.value?.contains("refresh_token") == true)
        XCTAssertEqual(client.authState(), .signedIn(userId: user.id, anonymous: true))
        let heardSignedIn = await eventually { listener.states.last == .signedIn(userId: user.id, anonymous: true) }
        XCTAssertTrue(heardSignedIn, "listener: \(listener.states)")

        // A call through the pipeline; quota headers are recorded.
        let quota = try await client.send(request: quotaCall, cancel: nil)
        XCTAssertEqual(quota.status, 200)
        XCTAssertTrue(quota.body.contains(#""plan""#), quota.body)
        XCTAssertTrue(quota.requestId?.hasPrefix("req-") == true)
        let last = client.lastQuota()
        XCTAssertEqual(last?.plan, "free")
        XCTAssertGreaterThan(last?.limit ?? 0, 0)

        // Expired tokens, then 10 concurrent calls: all succeed with exactly one refresh.
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

        // Quota used up -> PlanRequired("pro").
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

        // A CancelHandle ends a call the server holds for 2 s, promptly.
        try await server.admin("fault", #"{"path":"/api/v1/quota","kind":"delay","ms":2000}"#)
        let handle = CancelHandle()
        var start = Date()
        let held = Task { try await client.send(request: quotaCall, cancel: handle) }
        try await Task.sleep(nanoseconds: 200_000_000)
        handle.cancel()
        let heldResult = await held.result
        if case .failure(let error) = heldResult, case .Cancelled? = error as? TetherError {
        } else {
            XCTFail("CancelHandle: expected .Cancelled, got \(heldResult)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.5)
        XCTAssertTrue(handle.isCancelled())

        // Task cancellation: `Task.cancel()` alone would not reach Rust (see the top of the
        // file); sendCancellable bridges it to a CancelHandle. The client works afterwards.
        try await server.admin("fault", #"{"path":"/api/v1/quota","kind":"delay","ms":3000}"#)
        start = Date()
        let task = Task { try await client.sendCancellable(quotaCall) }
        try await Task.sleep(nanoseconds: 200_000_000)
        task.cancel()
        let taskResult = await task.result
        if case .failure(let error) = taskResult, case .Cancelled? = error as? TetherError {
        } else {
            XCTFail("Task cancellation: expected .Cancelled, got \(taskResult)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.5)
        let after = try await client.send(request: quotaCall, cancel: nil)
        XCTAssertEqual(after.status, 200)

        // Chat (tests/scenario.md 12-14): a reply streamed through a Swift listener into
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
        let hits = try await client.searchMessages(query: SearchQuery(text: "piece7"), cancel: nil)
        XCTAssertEqual(hits.first?.message.id, reply.id)
        XCTAssertTrue(hits.first?.snippet.contains("[piece7]") ?? false)
        for text in ["\"quoted", "AND", "*", "(NEAR", "-x"] {
            _ = try await client.searchMessages(query: SearchQuery(text: text), cancel: nil)
        }
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

        // The Swift Logger got log lines, none with a token in it.
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

        // Sign-out clears the state and the store; later calls are SignedOut.
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
}
