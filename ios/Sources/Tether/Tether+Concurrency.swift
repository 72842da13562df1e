// Swift concurrency idioms over the generated Tether.swift (which build-xcframework.sh
// copies next to this file): Task cancellation for every long call through one helper,
// an AsyncThrowingStream of a chat reply, AsyncStreams of the auth state and the quota.
//
// Why a helper: cancelling a Swift `Task` does NOT reach Rust through UniFFI's async
// bridge (the awaiting Task waits until the Rust future ends by itself), so every long
// call takes a `CancelHandle`. `withCancelHandle` makes one, cancels it from
// `withTaskCancellationHandler`, and hands it to the call: one generic helper instead of
// a wrapper per method.
//
// NOT COMPILED HERE (no Swift toolchain on the machine this was written on): see README.
import Foundation

/// Runs `body` with a fresh `CancelHandle` that is cancelled when the calling `Task` is,
/// so the Rust call ends at once with `TetherError.Cancelled`:
///
/// ```swift
/// let reply = try await withCancelHandle { try await client.send(request: req, cancel: $0) }
/// let found = try await withCancelHandle {
///     try await client.detect(image: .file(path: path), cancel: $0)
/// }
/// ```
public func withCancelHandle<T>(
    _ body: (CancelHandle) async throws -> T
) async throws -> T {
    let handle = CancelHandle()
    return try await withTaskCancellationHandler {
        try await body(handle)
    } onCancel: {
        handle.cancel()
    }
}

/// What a streamed chat reply yields: the text as it grows (coalesced by the core, at most
/// one delta per frame), then the stored reply.
public enum ChatEvent: Sendable {
    /// The next piece of the reply `messageId`.
    case delta(messageId: String, text: String)
    /// The reply as stored: `.complete`, or `.incomplete` if the stream broke off.
    case finished(Message)
}

/// Forwards the core's chat callbacks into a stream (the final reply comes from the call's
/// return value, so `onComplete` / `onError` have nothing to add).
private final class ChatRelay: ChatListener, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<ChatEvent, Error>.Continuation
    init(_ continuation: AsyncThrowingStream<ChatEvent, Error>.Continuation) {
        self.continuation = continuation
    }
    func onDelta(messageId: String, text: String) {
        continuation.yield(.delta(messageId: messageId, text: text))
    }
    func onComplete(message: Message) {}
    func onError(messageId: String, error: TetherError) {}
}

/// Forwards auth state changes into a stream (token rotations are not state changes).
private final class AuthRelay: AuthListener, @unchecked Sendable {
    private let continuation: AsyncStream<AuthState>.Continuation
    init(_ continuation: AsyncStream<AuthState>.Continuation) { self.continuation = continuation }
    func onStateChanged(state: AuthState) { continuation.yield(state) }
    func onSessionRefreshed(userId: String) {}
}

/// Forwards quota changes into a stream (a raised paywall is in the state's `paywall`).
private final class QuotaRelay: QuotaListener, @unchecked Sendable {
    private let continuation: AsyncStream<QuotaState>.Continuation
    init(_ continuation: AsyncStream<QuotaState>.Continuation) { self.continuation = continuation }
    func onQuotaChanged(state: QuotaState) { continuation.yield(state) }
    func onPaywall(planRequired: String, state: QuotaState) {}
}

extension TetherClient {
    /// Sends `text` in `conversationId` and streams the reply: `.delta`s as it grows, then
    /// `.finished` with the stored reply. Ending the iteration early (`break`, a cancelled
    /// Task) cancels the Rust stream; the reply stays stored as `.cancelled` with its
    /// partial text. Errors: as `sendMessage` (`PlanRequired` on a 402, ...).
    ///
    /// ```swift
    /// for try await event in client.replyStream(conversationId: id, text: "Hi") {
    ///     if case let .delta(_, text) = event { bubble.text += text }
    /// }
    /// ```
    public func replyStream(
        conversationId: String,
        text: String,
        options: ChatOptions? = nil
    ) -> AsyncThrowingStream<ChatEvent, Error> {
        AsyncThrowingStream(bufferingPolicy: .unbounded) { continuation in
            let handle = CancelHandle()
            let relay = ChatRelay(continuation)
            let task = Task {
                do {
                    let reply = try await self.sendMessage(
                        conversationId: conversationId, text: text, options: options,
                        listener: relay, cancel: handle)
                    continuation.yield(.finished(reply))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { termination in
                if case .cancelled = termination {
                    handle.cancel()
                    task.cancel()
                }
            }
        }
    }

    /// The auth state now and at every change, only the newest kept if the consumer is
    /// slow. The listener is removed when the iteration ends.
    public var authStates: AsyncStream<AuthState> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let subscription = self.addAuthListener(listener: AuthRelay(continuation))
            continuation.onTermination = { _ in subscription.cancel() }
        }
    }

    /// The quota state now and at every change (`paywall` set when a 402 raised it), only
    /// the newest kept if the consumer is slow. The listener is removed when the
    /// iteration ends.
    public var quotaStates: AsyncStream<QuotaState> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let subscription = self.addQuotaListener(listener: QuotaRelay(continuation))
            continuation.onTermination = { _ in subscription.cancel() }
        }
    }
}
