// Hand-written additions to the generated Tether.swift (which build-xcframework.sh copies
// next to this file).
//
// Cancelling a Swift `Task` does NOT reach Rust through UniFFI's async bridge: the awaiting
// Task keeps waiting until the Rust future finishes on its own. That is why the long calls
// take a `CancelHandle`. These wrappers tie the two together, so a cancelled Task ends the
// call at once with `TetherError.Cancelled`.
//
// NOT COMPILED HERE (no Swift toolchain on the machine this was written on).
import Foundation

extension TetherClient {
    /// `send(request:cancel:)` that is also cancelled when the calling Task is.
    public func sendCancellable(_ request: ApiRequest) async throws -> ApiResponse {
        let handle = CancelHandle()
        return try await withTaskCancellationHandler {
            try await send(request: request, cancel: handle)
        } onCancel: {
            handle.cancel()
        }
    }

    /// `accessToken(cancel:)` that is also cancelled when the calling Task is.
    public func accessTokenCancellable() async throws -> String {
        let handle = CancelHandle()
        return try await withTaskCancellationHandler {
            try await accessToken(cancel: handle)
        } onCancel: {
            handle.cancel()
        }
    }
}
