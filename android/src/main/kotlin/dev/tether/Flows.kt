/*
 * Kotlin idioms over the generated Tether API (dev.tether): a chat reply as a Flow of
 * deltas, the auth and quota states as StateFlows, uploads as a Flow of progress then the
 * result. Everything here is a thin layer over the listeners UniFFI generates; the Rust
 * core does the work.
 *
 * Cancellation: each long call below runs as a suspend call inside the flow's producer
 * coroutine, so cancelling the collector cancels that coroutine, which drops the Rust
 * future (the generated code's coroutine cancellation, the same path as cancelling any
 * suspend call). A chat reply cut short this way is stored as Cancelled with its partial
 * text. No CancelHandle is involved.
 *
 * Threads: listener calls arrive on Tether threads; they only hand the value to a channel
 * (never block, never call back into Tether), and collectors run in their own context.
 */
package dev.tether

import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.ProducerScope
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.SharingStarted
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.channelFlow
import kotlinx.coroutines.flow.conflate
import kotlinx.coroutines.flow.stateIn

// ---------------------------------------------------------------------------------------
// Chat

/** One event of a streamed chat reply. */
sealed interface ChatEvent {
    /** More text of the reply (append it to what came before). */
    data class Delta(val messageId: String, val text: String) : ChatEvent

    /** The reply ended and is stored: `Complete`, or `Incomplete` if the stream broke off. */
    data class Done(val message: Message) : ChatEvent
}

/**
 * [TetherClient.sendMessage] as a cold Flow: collecting it stores [text] and streams the
 * reply, emitting a [ChatEvent.Delta] per listener call (at most one per
 * `options.deltaIntervalMs`, 16 ms by default) and finally one [ChatEvent.Done] with the
 * stored reply. Errors (`PlanRequired`, the backend's error event, ...) end the flow with
 * the [TetherException]. Cancelling the collector (or `take(n)`, `first { }`, leaving the
 * screen's scope) cancels the Rust stream; the reply is then stored as `Cancelled`.
 *
 * ```
 * viewModelScope.launch {
 *     client.sendMessageFlow(conv.id, "hello").collect { e ->
 *         when (e) {
 *             is ChatEvent.Delta -> reply.value += e.text
 *             is ChatEvent.Done -> reply.value = e.message.content
 *         }
 *     }
 * }
 * ```
 */
fun TetherClient.sendMessageFlow(
    conversationId: String,
    text: String,
    options: ChatOptions? = null,
): Flow<ChatEvent> = chatFlow { listener -> sendMessage(conversationId, text, options, listener, null) }

/** [TetherClient.regenerate] as a Flow of [ChatEvent]s (see [sendMessageFlow]). */
fun TetherClient.regenerateFlow(messageId: String, options: ChatOptions? = null): Flow<ChatEvent> =
    chatFlow { listener -> regenerate(messageId, options, listener, null) }

/** [TetherClient.continueIncomplete] as a Flow of [ChatEvent]s (see [sendMessageFlow]). */
fun TetherClient.continueIncompleteFlow(messageId: String, options: ChatOptions? = null): Flow<ChatEvent> =
    chatFlow { listener -> continueIncomplete(messageId, options, listener, null) }

/**
 * Runs one streaming call with a listener feeding the flow. The buffer is unbounded so no
 * delta is ever dropped (they add up to the reply); Tether already paces deltas (one per
 * frame by default), so a slow collector holds a few strings, not a flood.
 */
private fun chatFlow(call: suspend (ChatListener) -> Message): Flow<ChatEvent> =
    channelFlow {
        val listener = object : ChatListener {
            override fun onDelta(messageId: String, text: String) {
                trySend(ChatEvent.Delta(messageId, text))
            }
            // The call's own return value and exception carry these.
            override fun onComplete(message: Message) {}
            override fun onError(messageId: String, error: TetherException) {}
        }
        val reply = call(listener)
        send(ChatEvent.Done(reply))
    }.buffer(Channel.UNLIMITED)

// ---------------------------------------------------------------------------------------
// Auth and quota states

/**
 * Every auth state as it changes, starting with the current one: an [AuthListener] that
 * lives as long as the collection (its [Subscription] is closed when the collector is
 * cancelled or the flow's scope ends). A slow collector sees the latest state, not a
 * backlog.
 */
fun TetherClient.authStates(): Flow<AuthState> =
    listenerFlow { ch ->
        addAuthListener(object : AuthListener {
            override fun onStateChanged(state: AuthState) {
                ch.trySend(state)
            }
            override fun onSessionRefreshed(userId: String) {}
        })
    }.conflate()

/**
 * The auth state as a [StateFlow] living in [scope], starting from [TetherClient.authState]
 * (no I/O) and kept current by an [AuthListener]. With the default
 * `SharingStarted.WhileSubscribed()` the listener is registered while someone collects and
 * its subscription closed when the last collector goes; with `Eagerly`, until [scope] ends.
 *
 * ```
 * val auth = client.authStateFlow(viewModelScope)
 * // Compose: val state by auth.collectAsState()
 * ```
 */
fun TetherClient.authStateFlow(
    scope: CoroutineScope,
    started: SharingStarted = SharingStarted.WhileSubscribed(),
): StateFlow<AuthState> = authStates().stateIn(scope, started, authState())

/**
 * Every quota state as it changes, starting with the current one (a [QuotaListener] that
 * lives as long as the collection). `state.paywall` is the plan to offer while the paywall
 * is up, null otherwise.
 */
fun TetherClient.quotaStates(): Flow<QuotaState> =
    listenerFlow { ch ->
        addQuotaListener(object : QuotaListener {
            override fun onQuotaChanged(state: QuotaState) {
                ch.trySend(state)
            }
            // The state that comes with it (paywall set) also arrives through onQuotaChanged.
            override fun onPaywall(planRequired: String, state: QuotaState) {}
        })
    }.conflate()

/**
 * The quota as a [StateFlow] in [scope], from [TetherClient.quota] (no I/O) and kept
 * current by a [QuotaListener]; `value.paywall != null` is the paywall flag. Subscription
 * lifetime as for [authStateFlow].
 */
fun TetherClient.quotaStateFlow(
    scope: CoroutineScope,
    started: SharingStarted = SharingStarted.WhileSubscribed(),
): StateFlow<QuotaState> = quotaStates().stateIn(scope, started, quota())

/**
 * Each time the paywall goes up, the plan the user needs (a one-shot event, for
 * navigation: the state itself is in [quotaStateFlow]). Not conflated: every refusal that
 * raised the paywall is delivered.
 */
fun TetherClient.paywallEvents(): Flow<String> =
    listenerFlow { ch ->
        addQuotaListener(object : QuotaListener {
            override fun onQuotaChanged(state: QuotaState) {}
            override fun onPaywall(planRequired: String, state: QuotaState) {
                ch.trySend(planRequired)
            }
        })
    }.buffer(Channel.UNLIMITED)

/** A flow fed by a listener registered for as long as it is collected. */
private fun <T> listenerFlow(register: (ProducerScope<T>) -> Subscription): Flow<T> =
    callbackFlow {
        val subscription = register(this)
        // close() releases the Rust handle, which stops the listener and lets Rust release
        // the Kotlin listener object.
        awaitClose { subscription.close() }
    }

// ---------------------------------------------------------------------------------------
// Uploads

/** One event of an upload: progress while the image is sent, then the result. */
sealed interface UploadEvent<out T> {
    /** [sent] of [total] bytes of attempt [attempt] (from 1; a retry starts again at 0). */
    data class Progress(val attempt: UInt, val sent: UInt, val total: UInt) : UploadEvent<Nothing>

    /** The call succeeded. */
    data class Done<T>(val result: T) : UploadEvent<T>
}

/**
 * [TetherClient.detect] as a cold Flow: [UploadEvent.Progress] events (at most about 20 a
 * second) and then one [UploadEvent.Done] with the [Detection]. Errors end the flow with
 * the [TetherException]; cancelling the collector cancels the upload.
 *
 * ```
 * client.detectFlow(ImageSource.File(path)).collect { e ->
 *     when (e) {
 *         is UploadEvent.Progress -> bar.progress = e.sent.toFloat() / e.total.toFloat()
 *         is UploadEvent.Done -> show(e.result.objects)
 *     }
 * }
 * ```
 */
fun TetherClient.detectFlow(image: ImageSource, options: DetectOptions? = null): Flow<UploadEvent<Detection>> =
    uploadFlow { progress -> detect(image, options, progress, null) }

/** [TetherClient.vision] as a Flow of progress then the [VisionReply] (see [detectFlow]). */
fun TetherClient.visionFlow(
    image: ImageSource,
    prompt: String,
    options: VisionOptions? = null,
): Flow<UploadEvent<VisionReply>> = uploadFlow { progress -> vision(image, prompt, options, progress, null) }

/**
 * Runs one upload with an [UploadProgress] feeding the flow. Unbounded so the result can
 * never be dropped behind progress; progress is already rate-limited by Tether.
 */
fun <T> uploadFlow(call: suspend (UploadProgress) -> T): Flow<UploadEvent<T>> =
    channelFlow {
        val progress = object : UploadProgress {
            override fun onProgress(attempt: UInt, sent: UInt, total: UInt) {
                trySend(UploadEvent.Progress(attempt, sent, total))
            }
        }
        send(UploadEvent.Done(call(progress)))
    }.buffer(Channel.UNLIMITED)
