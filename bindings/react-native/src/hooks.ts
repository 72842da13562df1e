/**
 * React hooks over a Tether client: the auth state, the quota and its paywall, a chat
 * conversation with its streaming reply, and image uploads with progress. They own the
 * listener registrations they make: each is cancelled (and its handle released) when
 * the component unmounts or the client changes, and a call still in flight when the
 * component unmounts is aborted.
 *
 * They use only the client object and the API's types and values (`./generated/tether`,
 * the module both ubrn flavours generate alike), never the FFI layer under it: the same
 * file runs in the app over JSI and in the Node test over N-API. Listener calls arrive
 * on the JS thread (ubrn hands them over), so they may set React state directly.
 *
 * See example/App.tsx for a screen that uses every one of them.
 */
import { useCallback, useEffect, useRef, useState } from "react";

import {
  CancelHandle,
  PageAt,
  TetherError,
  type AuthListener,
  type AuthState,
  type ChatListener,
  type ChatOptions,
  type DetectOptions,
  type Detection,
  type ImageSource,
  type Message,
  type QuotaListener,
  type QuotaState,
  type SubscriptionLike,
  type TetherClientLike,
  type UploadProgress,
  type VisionOptions,
  type VisionReply,
} from "./generated/tether";

/** Stops a listener registration now and releases its native handle without waiting for GC. */
function dispose(subscription: SubscriptionLike): void {
  subscription.cancel();
  (subscription as { uniffiDestroy?: () => void }).uniffiDestroy?.();
}

/**
 * Whether `e` is the rejection of a cancelled call: `TetherError.Cancelled` (a
 * `CancelHandle`) or the runtime's `AbortError` (an `AbortSignal`).
 */
export function isCancellation(e: unknown): boolean {
  return (e instanceof Error && e.name === "AbortError") || (TetherError.instanceOf(e) && TetherError.Cancelled.instanceOf(e));
}

// ---------------------------------------------------------------------------------------
// useAuthState

/**
 * The client's auth state (`Unknown` until `restoreSession()` has run, then `SignedOut`
 * or `SignedIn`), re-rendering on every change.
 *
 * ```tsx
 * const auth = useAuthState(client);
 * if (auth.tag === "SignedIn") return <Text>Hello {auth.inner.userId}</Text>;
 * ```
 */
export function useAuthState(client: TetherClientLike): AuthState {
  const [state, setState] = useState<AuthState>(() => client.authState());
  useEffect(() => {
    let live = true;
    const listener: AuthListener = {
      onStateChanged(next: AuthState): void {
        if (live) setState(next);
      },
      onSessionRefreshed(_userId: string): void {},
    };
    const subscription = client.addAuthListener(listener);
    // The listener is told the current state at once; this covers a client changed since
    // the first render, before that call arrives.
    setState(client.authState());
    return () => {
      live = false;
      dispose(subscription);
    };
  }, [client]);
  return state;
}

// ---------------------------------------------------------------------------------------
// useQuota

export interface QuotaHook {
  /** The latest quota state (`source` says how far to trust it). */
  quota: QuotaState;
  /**
   * The raised paywall: the plan that lifts it (`""` if the backend named none), or
   * `undefined` when no paywall is up. Show the paywall while it is set.
   */
  paywall: string | undefined;
  /** Asks the server for the current quota (after a purchase, say); lifts a paywall it no longer holds. */
  refresh: () => Promise<QuotaState>;
}

/**
 * The quota and the paywall flag, re-rendering on every change.
 *
 * ```tsx
 * const { quota, paywall, refresh } = useQuota(client);
 * if (paywall !== undefined) return <Paywall plan={paywall} onPurchased={refresh} />;
 * ```
 */
export function useQuota(client: TetherClientLike): QuotaHook {
  const [quota, setQuota] = useState<QuotaState>(() => client.quota());
  useEffect(() => {
    let live = true;
    const listener: QuotaListener = {
      onQuotaChanged(state: QuotaState): void {
        if (live) setQuota(state);
      },
      onPaywall(_planRequired: string, state: QuotaState): void {
        if (live) setQuota(state);
      },
    };
    const subscription = client.addQuotaListener(listener);
    setQuota(client.quota());
    return () => {
      live = false;
      dispose(subscription);
    };
  }, [client]);
  const refresh = useCallback(() => client.refreshQuota(undefined), [client]);
  return { quota, paywall: quota.paywall, refresh };
}

// ---------------------------------------------------------------------------------------
// useChat

/** The reply being streamed. */
export interface StreamingReply {
  /** The reply's message id (it is already stored, as `Streaming`). */
  messageId: string;
  /** The text so far: it grows as deltas arrive. */
  text: string;
}

export interface ChatHook {
  /** The conversation's newest messages, oldest first (from the history). */
  messages: Message[];
  /** Whether the history is being (re)loaded. */
  loading: boolean;
  /** The text of the message being sent, until the history shows it. */
  pending: string | undefined;
  /** The reply as it streams; `undefined` when no reply is streaming. */
  streaming: StreamingReply | undefined;
  /** Whether a `send` is in flight. */
  sending: boolean;
  /**
   * The last failure of `send` or of loading the history (a `TetherError`, such as
   * `PlanRequired`), cleared by the next `send`. A cancelled reply is not an error.
   */
  error: TetherError | Error | undefined;
  /**
   * Sends `text` and streams the reply. Resolves with the stored reply, or `undefined`
   * if it failed (see `error`) or was cancelled. One send at a time: a second call while
   * one is in flight is refused with an Error.
   */
  send: (text: string, options?: ChatOptions) => Promise<Message | undefined>;
  /** Stops the reply being streamed; it stays in the history as `Cancelled` with its partial text. */
  cancel: () => void;
  /** Reloads the newest messages from the history. */
  reload: () => Promise<void>;
}

export interface UseChatOptions {
  /** How many of the newest messages to show (1..=200, default 50). */
  pageSize?: number;
  /** Cancel a reply still streaming when the component unmounts (default true). */
  cancelOnUnmount?: boolean;
}

/**
 * A conversation: its messages from the history, the reply as it streams in, and
 * `send` / `cancel`.
 *
 * ```tsx
 * const chat = useChat(client, conversationId);
 * <FlatList data={chat.messages} renderItem={({ item }) => <Bubble message={item} />} />
 * {chat.streaming && <Bubble text={chat.streaming.text} />}
 * <Button title="Send" onPress={() => chat.send(draft)} disabled={chat.sending} />
 * {chat.sending && <Button title="Stop" onPress={chat.cancel} />}
 * ```
 */
export function useChat(client: TetherClientLike, conversationId: string, options: UseChatOptions = {}): ChatHook {
  const pageSize = options.pageSize ?? 50;
  const cancelOnUnmount = options.cancelOnUnmount ?? true;
  const [messages, setMessages] = useState<Message[]>([]);
  const [loading, setLoading] = useState(true);
  const [pending, setPending] = useState<string | undefined>(undefined);
  const [streaming, setStreaming] = useState<StreamingReply | undefined>(undefined);
  const [sending, setSending] = useState(false);
  const [error, setError] = useState<TetherError | Error | undefined>(undefined);
  // Mount-scoped state the callbacks read: whether the component is still mounted for
  // this conversation, the in-flight send's cancel handle, and a load generation so an
  // older reload cannot overwrite a newer one. A CancelHandle rather than an AbortSignal:
  // Tether stores the reply as Cancelled before the call rejects, so the reload that
  // follows shows it (dropping the call through a signal stores it a moment later).
  const live = useRef(false);
  const inFlight = useRef<CancelHandle | undefined>(undefined);
  const loads = useRef(0);

  const reload = useCallback(async (): Promise<void> => {
    const generation = ++loads.current;
    setLoading(true);
    try {
      const page = await client.listMessages(conversationId, new PageAt.Newest(), pageSize);
      if (live.current && generation === loads.current) setMessages(page.messages);
    } catch (e) {
      if (live.current && generation === loads.current) setError(e as TetherError | Error);
    } finally {
      if (live.current && generation === loads.current) setLoading(false);
    }
  }, [client, conversationId, pageSize]);

  useEffect(() => {
    live.current = true;
    setMessages([]);
    setStreaming(undefined);
    setError(undefined);
    void reload();
    return () => {
      live.current = false;
      if (cancelOnUnmount) inFlight.current?.cancel();
      inFlight.current = undefined;
    };
  }, [reload, cancelOnUnmount]);

  const send = useCallback(
    async (text: string, chatOptions?: ChatOptions): Promise<Message | undefined> => {
      if (inFlight.current) throw new Error("useChat: a message is already being sent");
      const handle = new CancelHandle();
      inFlight.current = handle;
      // The listener belongs to this send only; after unmount (or once the send is over)
      // it changes nothing.
      const mine = () => live.current && inFlight.current === handle;
      const listener: ChatListener = {
        onDelta(messageId: string, delta: string): void {
          if (!mine()) return;
          setStreaming((s) => (s && s.messageId === messageId ? { messageId, text: s.text + delta } : { messageId, text: delta }));
        },
        onComplete(_message: Message): void {},
        onError(_messageId: string, _error: TetherError): void {},
      };
      setError(undefined);
      setPending(text);
      setStreaming(undefined);
      setSending(true);
      try {
        return await client.sendMessage(conversationId, text, chatOptions, listener, handle);
      } catch (e) {
        if (mine() && !isCancellation(e)) setError(e as TetherError | Error);
        return undefined;
      } finally {
        const wasMine = mine();
        if (inFlight.current === handle) inFlight.current = undefined;
        handle.uniffiDestroy();
        if (wasMine) {
          // The history now holds the user's message and the reply (Complete, Cancelled
          // or Failed, with its text): show it in place of the streaming bubble.
          await reload();
          if (live.current) {
            setPending(undefined);
            setStreaming(undefined);
            setSending(false);
          }
        }
      }
    },
    [client, conversationId, reload],
  );

  const cancel = useCallback(() => inFlight.current?.cancel(), []);

  return { messages, loading, pending, streaming, sending, error, send, cancel, reload };
}

// ---------------------------------------------------------------------------------------
// useUpload

/** Upload progress: `sent` of `total` bytes of attempt number `attempt` (a retry starts again at 0). */
export interface UploadProgressState {
  attempt: number;
  sent: number;
  total: number;
  /** `sent / total`, 0..1. */
  fraction: number;
}

export interface UploadHook {
  /** Whether an upload is in flight. */
  uploading: boolean;
  /** The progress of the current (or last) upload. */
  progress: UploadProgressState | undefined;
  /** The last upload's answer. */
  result: Detection | VisionReply | undefined;
  /** The last upload's failure (`PlanRequired`, `PayloadTooLarge`, `UnsupportedMedia`, ...). */
  error: TetherError | Error | undefined;
  /** Whether the last upload was cancelled. */
  cancelled: boolean;
  /** Finds objects in the image; resolves with the detection, or `undefined` on failure or cancel. */
  detect: (image: ImageSource, options?: DetectOptions) => Promise<Detection | undefined>;
  /** Asks a question about the image; resolves with the reply, or `undefined` on failure or cancel. */
  vision: (image: ImageSource, prompt: string, options?: VisionOptions) => Promise<VisionReply | undefined>;
  /** Cancels the upload in flight (the Rust call is dropped; nothing is charged for an unfinished upload). */
  cancel: () => void;
  /** Clears progress, result and error. */
  reset: () => void;
}

/**
 * Image uploads (`detect`, `vision`) with progress, the result, the error and `cancel`.
 * One upload at a time: a second call while one is in flight is refused with an Error.
 *
 * ```tsx
 * const upload = useUpload(client);
 * <Button title="Detect" onPress={() => upload.detect(new ImageSource.File({ path }))} />
 * {upload.progress && <ProgressBar value={upload.progress.fraction} />}
 * {upload.uploading && <Button title="Cancel" onPress={upload.cancel} />}
 * ```
 */
export function useUpload(client: TetherClientLike): UploadHook {
  const [uploading, setUploading] = useState(false);
  const [progress, setProgress] = useState<UploadProgressState | undefined>(undefined);
  const [result, setResult] = useState<Detection | VisionReply | undefined>(undefined);
  const [error, setError] = useState<TetherError | Error | undefined>(undefined);
  const [cancelled, setCancelled] = useState(false);
  const live = useRef(false);
  const inFlight = useRef<AbortController | undefined>(undefined);

  useEffect(() => {
    live.current = true;
    return () => {
      live.current = false;
      inFlight.current?.abort();
      inFlight.current = undefined;
    };
  }, [client]);

  const run = useCallback(
    async <T extends Detection | VisionReply>(call: (progress: UploadProgress, signal: AbortSignal) => Promise<T>): Promise<T | undefined> => {
      if (inFlight.current) throw new Error("useUpload: an upload is already in flight");
      const controller = new AbortController();
      inFlight.current = controller;
      const mine = () => live.current && inFlight.current === controller;
      const listener: UploadProgress = {
        onProgress(attempt: number, sent: number, total: number): void {
          if (mine()) setProgress({ attempt, sent, total, fraction: total > 0 ? Math.min(1, sent / total) : 0 });
        },
      };
      setUploading(true);
      setProgress(undefined);
      setResult(undefined);
      setError(undefined);
      setCancelled(false);
      try {
        const answer = await call(listener, controller.signal);
        if (mine()) setResult(answer);
        return answer;
      } catch (e) {
        if (mine()) {
          if (isCancellation(e)) setCancelled(true);
          else setError(e as TetherError | Error);
        }
        return undefined;
      } finally {
        if (mine()) setUploading(false);
        if (inFlight.current === controller) inFlight.current = undefined;
      }
    },
    [],
  );

  const detect = useCallback(
    (image: ImageSource, options?: DetectOptions) =>
      run((progress, signal) => client.detect(image, options, progress, undefined, { signal })),
    [client, run],
  );
  const vision = useCallback(
    (image: ImageSource, prompt: string, options?: VisionOptions) =>
      run((progress, signal) => client.vision(image, prompt, options, progress, undefined, { signal })),
    [client, run],
  );
  const cancel = useCallback(() => inFlight.current?.abort(), []);
  const reset = useCallback(() => {
    setProgress(undefined);
    setResult(undefined);
    setError(undefined);
    setCancelled(false);
  }, []);

  return { uploading, progress, result, error, cancelled, detect, vision, cancel, reset };
}
